from fastapi import APIRouter

from app.db.session import SessionDep
from app.reports import service as report_service
from app.reports.dependencies import ReportPeriod
from app.reports.schemas import CoverageReport
from app.routing import ServiceRoute
from app.tenancy.dependencies import CurrentTenant

router = APIRouter(prefix="/v1", tags=["reports"], route_class=ServiceRoute)


@router.get(
    "/coverage",
    summary="Revenue coverage and revenue by NPS bucket for a period",
    description=(
        "The revenue base is every account whose revenue in force at the period end is "
        "above 0. An account is covered when it has a scored response submitted in the "
        "period; its latest one decides its bucket: 0-6 at_risk, 7-8 passive, 9-10 safe."
    ),
)
async def get_coverage(
    session: SessionDep, tenant: CurrentTenant, period: ReportPeriod
) -> CoverageReport:
    return await report_service.coverage(session, tenant, period)
