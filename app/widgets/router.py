from fastapi import APIRouter, Response

from app.db.session import SessionDep
from app.reports import service as report_service
from app.reports.dependencies import (
    AsOfQuery,
    FromQuery,
    LevelQuery,
    PeriodQuery,
    RollupQuery,
    TimezoneQuery,
    ToQuery,
    report_period,
)
from app.reports.schemas import Level
from app.routing import ServiceRoute
from app.tenancy.dependencies import ReadOrShareTenant
from app.widgets.svg import render_coverage_svg

router = APIRouter(prefix="/v1/widgets", tags=["widgets"], route_class=ServiceRoute)

SVG_MEDIA_TYPE = "image/svg+xml"
# The SVG loads nothing, so the policy allows nothing. `sandbox` keeps the SVG inert when
# it is opened as a page of its own.
WIDGET_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    # Displays revalidate on every load, so a revoked share token stops working at once.
    "Cache-Control": "private, no-cache",
}


@router.get(
    "/coverage.svg",
    summary="The coverage gauge and the revenue bar in four buckets, as an SVG image",
    description=(
        "The figures of `/v1/coverage` for the same parameters, drawn for an `<img>` "
        "element. Send an API key with the `read` scope as a bearer token, or a share "
        "token from `POST /v1/share-tokens` as `token`. Each bar segment carries its exact "
        "revenue, share and account count in `data-` attributes."
    ),
    response_class=Response,
    responses={200: {"content": {SVG_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def get_coverage_svg(
    session: SessionDep,
    tenant: ReadOrShareTenant,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    timezone: TimezoneQuery = None,
    as_of: AsOfQuery = None,
    rollup: RollupQuery = None,
    level: LevelQuery = Level.ACCOUNT,
) -> Response:
    # The share token path has no API key, so the period is resolved here rather than by
    # the `ReportPeriod` dependency, which authenticates one.
    resolved = await report_period(tenant, period, start, end, timezone, as_of)
    report = await report_service.coverage(session, tenant, resolved, rollup=rollup, level=level)
    return Response(render_coverage_svg(report), media_type=SVG_MEDIA_TYPE, headers=WIDGET_HEADERS)
