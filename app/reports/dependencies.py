from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from app.errors import InvalidField, UnprocessableError
from app.periods import ACCEPTED_FORMS, Period, resolve_period
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
) -> Period:
    """The period a report covers; the current quarter when none is given."""
    zone = _zone(tenant.timezone, timezone)
    return resolve_period(period, start, end, timezone=zone, now=datetime.now(UTC))


async def optional_period(
    tenant: CurrentTenant,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    timezone: TimezoneQuery = None,
) -> Period | None:
    """A period filter for lists; None when no period parameter is given."""
    if period is None and start is None and end is None:
        return None
    return await report_period(tenant, period, start, end, timezone)


ReportPeriod = Annotated[Period, Depends(report_period)]
OptionalPeriod = Annotated[Period | None, Depends(optional_period)]
