from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from app.errors import InvalidField, UnprocessableError
from app.periods import ACCEPTED_FORMS, Period, parse_as_of, resolve_period
from app.reports.schemas import Rollup
from app.tenancy.dependencies import CurrentTenant
from app.tenancy.schemas import validate_timezone

PeriodQuery = Annotated[
    str | None,
    Query(description=f"The period: {ACCEPTED_FORMS}.", examples=["2026-Q1"]),
]
FromQuery = Annotated[
    str | None,
    Query(alias="from", description="Start of a custom period (inclusive), ISO 8601."),
]
ToQuery = Annotated[
    str | None, Query(alias="to", description="End of a custom period (exclusive), ISO 8601.")
]
TimezoneQuery = Annotated[
    str | None,
    Query(description="IANA time zone for period edges; default: the tenant's timezone."),
]
AsOfQuery = Annotated[
    str | None,
    Query(
        description="Instant the report is made at, ISO 8601; default: now. Rolling windows "
        "end here, and a period not over by then uses the revenue in force at it.",
        examples=["2026-03-15T12:00:00Z"],
    ),
]
RollupQuery = Annotated[
    Rollup | None,
    Query(description="Roll-up rule; default: the tenant's `default_rollup`."),
]


def _zone(tenant_timezone: str, override: str | None) -> str:
    if override is None:
        return tenant_timezone
    try:
        return validate_timezone(override)
    except ValueError as error:
        raise UnprocessableError(
            str(error), errors=[InvalidField(location="query.timezone", message=str(error))]
        ) from None


async def report_period(
    tenant: CurrentTenant,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    timezone: TimezoneQuery = None,
    as_of: AsOfQuery = None,
) -> Period:
    """The period a report covers; the quarter containing `as_of` when none is given."""
    zone = _zone(tenant.timezone, timezone)
    moment = datetime.now(UTC) if as_of is None else parse_as_of(as_of, zone)
    return resolve_period(
        period,
        start,
        end,
        timezone=zone,
        now=moment,
        fiscal_year_start_month=tenant.fiscal_year_start_month,
    )


async def optional_period(
    tenant: CurrentTenant,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    timezone: TimezoneQuery = None,
    as_of: AsOfQuery = None,
) -> Period | None:
    """A period filter for lists; None when no period parameter is given."""
    if period is None and start is None and end is None:
        return None
    return await report_period(tenant, period, start, end, timezone, as_of)


ReportPeriod = Annotated[Period, Depends(report_period)]
OptionalPeriod = Annotated[Period | None, Depends(optional_period)]
