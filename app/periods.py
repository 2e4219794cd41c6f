"""Reporting periods: half-open intervals `[start, end)` between local midnights of a time zone."""

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from app.errors import InvalidField, UnprocessableError
from app.schemas import check_timestamp_range

ACCEPTED_FORMS = (
    "a quarter `2026-Q1`, a month `2026-03`, a year `2026`, "
    "or `from` and `to` as ISO 8601 dates or timestamps"
)

_QUARTER = re.compile(r"^([0-9]{4})-Q([1-4])$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^([0-9]{4})$")
MIN_YEAR = 1970


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime
    timezone: str


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _add_months(year: int, month: int, months: int) -> date:
    index = year * 12 + (month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _invalid(location: str, value: str, reason: str) -> UnprocessableError:
    return UnprocessableError(
        f"Invalid {location.split('.')[-1]} {value!r}: {reason}.",
        errors=[InvalidField(location=location, message=f"{reason} (got {value!r})")],
    )


def _calendar_period(label: str, zone: ZoneInfo, timezone: str) -> Period:
    if match := _QUARTER.match(label):
        first_month, months = 3 * int(match[2]) - 2, 3
    elif match := _MONTH.match(label):
        first_month, months = int(match[2]), 1
    elif match := _YEAR.match(label):
        first_month, months = 1, 12
    else:
        raise _invalid("query.period", label, f"expected {ACCEPTED_FORMS}")
    year = int(match[1])
    if year < MIN_YEAR or year > 9998:
        raise _invalid("query.period", label, f"the year must be from {MIN_YEAR} to 9998")

    first = date(year, first_month, 1)
    last = _add_months(first.year, first.month, months)
    return Period(label, _local_midnight(first, zone), _local_midnight(last, zone), timezone)


def _parse_bound(value: str, zone: ZoneInfo, location: str) -> datetime:
    """Parse a date (local midnight) or a timestamp; a timestamp without offset is local."""
    text = value.strip()
    try:
        if len(text) == 10:
            return _local_midnight(date.fromisoformat(text), zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(
            location, value, "expected an ISO 8601 date or timestamp such as 2026-01-01"
        ) from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    try:
        return check_timestamp_range(moment)
    except ValueError as error:
        raise _invalid(location, value, str(error)) from None


def current_quarter_label(now: datetime) -> str:
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def resolve_period(
    period: str | None,
    start: str | None,
    end: str | None,
    *,
    timezone: str,
    now: datetime,
) -> Period:
    """Build the period a report asks for; with no parameters, the current quarter.

    Raises UnprocessableError naming the bad parameter and the accepted forms.
    """
    zone = ZoneInfo(timezone)
    if period is not None and (start is not None or end is not None):
        raise UnprocessableError(
            f"Pass either `period` or `from` and `to`, not both; accepted: {ACCEPTED_FORMS}.",
            errors=[InvalidField(location="query.period", message="conflicts with from/to")],
        )
    if start is None and end is None:
        label = period if period is not None else current_quarter_label(now.astimezone(zone))
        return _calendar_period(label.strip(), zone, timezone)
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise UnprocessableError(
            f"`{missing}` is missing; a custom period needs both `from` and `to`.",
            errors=[InvalidField(location=f"query.{missing}", message="field required")],
        )

    begin = _parse_bound(start, zone, "query.from")
    finish = _parse_bound(end, zone, "query.to")
    if finish <= begin:
        raise _invalid("query.to", end, f"`to` must be later than `from` ({start})")
    return Period(f"{start.strip()}/{end.strip()}", begin, finish, timezone)
