from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from app.errors import InvalidField, UnprocessableError
from app.periods import ACCEPTED_FORMS, Period, parse_as_of, resolve_period

# Private to the coverage report's dependencies; imported so that a time zone override is
# validated the same way.
from app.reports.dependencies import AsOfQuery, TimezoneQuery, resolve_timezone
from app.tenancy.dependencies import CurrentTenant

FLOW_PERIOD_FORMS = (
    f"{ACCEPTED_FORMS.split(', or `from`')[0]}, or a custom range `<start>/<end>` of two "
    "ISO 8601 dates or timestamps"
)


def _resolve(
    label: str, parameter: str, *, zone: str, now: datetime, fiscal_year_start_month: int
) -> Period:
    """Resolve a period label or a `<start>/<end>` range; errors name `parameter`."""
    start, slash, end = label.partition("/")
    try:
        if slash:
            return resolve_period(
                None,
                start,
                end,
                timezone=zone,
                now=now,
                fiscal_year_start_month=fiscal_year_start_month,
            )
        return resolve_period(
            label,
            None,
            None,
            timezone=zone,
            now=now,
            fiscal_year_start_month=fiscal_year_start_month,
        )
    except UnprocessableError as error:
        message = f"invalid period {label!r}: expected {FLOW_PERIOD_FORMS}"
        raise UnprocessableError(
            f"Invalid `{parameter}` {label!r}: {error.detail}",
            errors=[InvalidField(location=f"query.{parameter}", message=message)],
        ) from None


async def flow_periods(
    tenant: CurrentTenant,
    opening: Annotated[
        str,
        Query(alias="from", description=f"The opening period: {FLOW_PERIOD_FORMS}."),
    ],
    closing: Annotated[
        str,
        Query(alias="to", description="The closing period, in the same forms as `from`."),
    ],
    timezone: TimezoneQuery = None,
    as_of: AsOfQuery = None,
) -> tuple[Period, Period]:
    """Resolve the opening and closing periods of a flow report at one `as_of` instant."""
    zone = resolve_timezone(tenant.timezone, timezone)
    moment = datetime.now(UTC) if as_of is None else parse_as_of(as_of, zone)
    fiscal_start = tenant.fiscal_year_start_month
    return (
        _resolve(opening, "from", zone=zone, now=moment, fiscal_year_start_month=fiscal_start),
        _resolve(closing, "to", zone=zone, now=moment, fiscal_year_start_month=fiscal_start),
    )


FlowPeriods = Annotated[tuple[Period, Period], Depends(flow_periods)]
