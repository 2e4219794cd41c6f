from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.account_lists import service as list_service
from app.account_lists.dependencies import CSV_MEDIA_TYPE, CsvRequested
from app.account_lists.schemas import AtRiskItem, AtRiskSort, SurveyNextItem, SurveyNextSort
from app.db.session import ReportSessionDep
from app.reports.dependencies import LevelQuery, ReportPeriod, RollupQuery
from app.reports.schemas import Level
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import ReadTenant

router = APIRouter(prefix="/v1/reports", tags=["reports"], route_class=ServiceRoute)

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "JSON page, or with `Accept: text/csv` every item from the cursor "
        "on (the whole list without a cursor) as CSV with a header row; `limit` does not "
        "apply to CSV.",
    }
}


def _csv_response(lines: Iterator[str], name: str) -> Response:
    # The rows are already fetched, so the CSV is sent as one body. Streaming it line by
    # line ran each line in the thread pool and took minutes under load.
    return Response(
        "".join(lines),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/at-risk",
    summary="At-risk accounts of a period with the response that decided each",
    description=(
        "Accounts of the revenue base that the roll-up rule puts in `at_risk`, as in "
        "`/v1/coverage` for the same parameters, by revenue descending unless `sort` says "
        "otherwise. The deciding response is the lowest-scored response the rule counted "
        "(the newest among equal scores); under `latest` and `decision_maker` the rule "
        "counts one response per account."
    ),
    response_model=Page[AtRiskItem],
    responses=CSV_RESPONSE,
)
async def get_at_risk(
    session: ReportSessionDep,
    tenant: ReadTenant,
    period: ReportPeriod,
    csv: CsvRequested,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
    sort: Annotated[AtRiskSort, Query(description="Sort column; `-` for descending.")] = (
        AtRiskSort.REVENUE_DESC
    ),
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AtRiskItem] | Response:
    if csv:
        lines = await list_service.at_risk_csv(
            session, tenant, period, rollup=rollup, level=level, sort=sort, cursor=cursor
        )
        return _csv_response(lines, "at-risk")
    return await list_service.at_risk_page(
        session,
        tenant,
        period,
        rollup=rollup,
        level=level,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/survey-next",
    summary="Unaccounted accounts to survey next, with the coverage each one adds",
    description=(
        "Accounts of the revenue base without a scored response in the period, by revenue "
        "descending. `cumulative_coverage` is the coverage reached if the account and every "
        "account before it in revenue order answer, and `reaches_target` turns true at the "
        "first account where that meets the tenant's `coverage_target`. These figures "
        "always follow revenue order, also when `sort=revenue` lists the accounts "
        "ascending. Which accounts are covered does not depend on the roll-up rule."
    ),
    response_model=Page[SurveyNextItem],
    responses=CSV_RESPONSE,
)
async def get_survey_next(
    session: ReportSessionDep,
    tenant: ReadTenant,
    period: ReportPeriod,
    csv: CsvRequested,
    level: LevelQuery = Level.ACCOUNT,
    sort: Annotated[SurveyNextSort, Query(description="Sort column; `-` for descending.")] = (
        SurveyNextSort.REVENUE_DESC
    ),
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[SurveyNextItem] | Response:
    if csv:
        lines = await list_service.survey_next_csv(
            session, tenant, period, level=level, sort=sort, cursor=cursor
        )
        return _csv_response(lines, "survey-next")
    return await list_service.survey_next_page(
        session, tenant, period, level=level, sort=sort, limit=limit, cursor=cursor
    )
