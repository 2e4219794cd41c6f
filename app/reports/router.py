from fastapi import APIRouter

from app.accounts.router import ExternalIdPath
from app.db.session import ReportSessionDep
from app.reports import service as report_service
from app.reports.dependencies import (
    MAX_TREND_PERIODS,
    LevelQuery,
    ReportPeriod,
    RollupQuery,
    SegmentByQuery,
    TrendPeriods,
)
from app.reports.schemas import (
    ClassificationRead,
    CoverageReport,
    Level,
    SegmentsReport,
    TrendReport,
)
from app.routing import ServiceRoute
from app.tenancy.dependencies import ReadTenant

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
    session: ReportSessionDep,
    tenant: ReadTenant,
    period: ReportPeriod,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
) -> CoverageReport:
    return await report_service.coverage(session, tenant, period, rollup=rollup, level=level)


@router.get(
    "/accounts/{external_id}/classification",
    summary="Explain an account's bucket in a period under a roll-up rule",
)
async def get_classification(
    session: ReportSessionDep,
    tenant: ReadTenant,
    external_id: ExternalIdPath,
    period: ReportPeriod,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
) -> ClassificationRead:
    return await report_service.classification(
        session, tenant, external_id, period, rollup=rollup, level=level
    )


@router.get(
    "/coverage/segments",
    summary="Coverage per segment of accounts: revenue tier, region, industry, owner or attribute",
    description=(
        "Each segment's figures are those of `/v1/coverage` over the segment's accounts and "
        "their responses. Every value any account holds makes a segment, as does every "
        "revenue tier, and accounts without a value form the `unassigned` segment. Tiers use "
        "the revenue in force at the period end. Segments come by total revenue, largest first."
    ),
)
async def get_coverage_segments(
    session: ReportSessionDep,
    tenant: ReadTenant,
    period: ReportPeriod,
    by: SegmentByQuery,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
) -> SegmentsReport:
    return await report_service.segments(session, tenant, period, by, rollup=rollup, level=level)


@router.get(
    "/coverage/trend",
    summary="Coverage for each quarter or month of a range, oldest first",
    description=(
        "Each period's figures equal those of `/v1/coverage?period=<label>`, with revenue in "
        f"force at that period's end. At most {MAX_TREND_PERIODS} periods."
    ),
)
async def get_coverage_trend(
    session: ReportSessionDep,
    tenant: ReadTenant,
    trend_range: TrendPeriods,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
) -> TrendReport:
    return await report_service.trend(
        session,
        tenant,
        trend_range.periods,
        granularity=trend_range.granularity,
        rollup=rollup,
        level=level,
    )
