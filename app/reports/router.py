from fastapi import APIRouter

from app.accounts.router import ExternalIdPath
from app.db.session import SessionDep
from app.reports import service as report_service
from app.reports.dependencies import ReportPeriod, RollupQuery
from app.reports.schemas import ClassificationRead, CoverageReport
from app.routing import ServiceRoute
from app.tenancy.dependencies import CurrentTenant

router = APIRouter(prefix="/v1", tags=["reports"], route_class=ServiceRoute)


@router.get(
    "/coverage",
    summary="Revenue coverage and revenue by NPS bucket for a period",
    description=(
        "The revenue base is every account whose revenue in force at the period end is "
        "above 0. An account is covered when it has a scored response submitted in the "
        "period. The roll-up rule (`rollup`) turns its responses into its bucket; under "
        "`latest` its latest response decides: 0-6 at_risk, 7-8 passive, 9-10 safe."
    ),
)
async def get_coverage(
    session: SessionDep, tenant: CurrentTenant, period: ReportPeriod, rollup: RollupQuery = None
) -> CoverageReport:
    return await report_service.coverage(session, tenant, period, rollup=rollup)


@router.get(
    "/accounts/{external_id}/classification",
    summary="Explain an account's bucket in a period under a roll-up rule",
)
async def get_classification(
    session: SessionDep,
    tenant: CurrentTenant,
    external_id: ExternalIdPath,
    period: ReportPeriod,
    rollup: RollupQuery = None,
) -> ClassificationRead:
    return await report_service.classification(session, tenant, external_id, period, rollup=rollup)
