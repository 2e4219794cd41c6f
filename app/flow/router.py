from fastapi import APIRouter

from app.db.session import ReportSessionDep
from app.flow import service as flow_service
from app.flow.dependencies import FlowPeriods
from app.flow.schemas import FlowReport
from app.reports.dependencies import LevelQuery, RollupQuery
from app.reports.schemas import Level
from app.routing import ServiceRoute
from app.tenancy.dependencies import ReadTenant

router = APIRouter(prefix="/v1/reports", tags=["reports"], route_class=ServiceRoute)


@router.get(
    "/flow",
    summary="Revenue moving between NPS buckets from one period to another",
    description=(
        "Every account's state (`at_risk`, `passive`, `safe`, `unaccounted`, or "
        "`not_in_base` when its revenue at the period end is not above 0) and revenue in "
        "each period, summed by pair of states. The sums of `revenue_from` by `from_state` "
        "equal the buckets of `/v1/coverage` for `from`, and the sums of `revenue_to` by "
        "`to_state` those for `to`, under the same `rollup`, `timezone` and `as_of`."
    ),
    response_model_by_alias=True,
)
async def get_flow(
    session: ReportSessionDep,
    tenant: ReadTenant,
    periods: FlowPeriods,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
) -> FlowReport:
    opening, closing = periods
    return await flow_service.flow(session, tenant, opening, closing, rollup=rollup, level=level)
