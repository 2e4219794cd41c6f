"""Reporting periods: half-open intervals `[start, end)` in a time zone.

Calendar and fiscal periods run between local midnights. A rolling window `last-<N>d` ends
at the report's `as_of` instant and starts N days earlier at the same local wall-clock time.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.errors import InvalidField, UnprocessableError, invalid_query
from app.schemas import check_timestamp_range

ACCEPTED_FORMS = (
    "a quarter `2026-Q1`, a month `2026-03`, a year `2026`, a fiscal quarter `FY2026-Q1`, "
    "a fiscal year `FY2026`, a rolling window of N days `last-90d`, "
    "or `from` and `to` as ISO 8601 dates or timestamps"
)

_QUARTER = re.compile(r"^([0-9]{4})-Q([1-4])$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^([0-9]{4})$")
_FISCAL_QUARTER = re.compile(r"^FY([0-9]{4})-Q([1-4])$")
_FISCAL_YEAR = re.compile(r"^FY([0-9]{4})$")
_ROLLING = re.compile(r"^last-([0-9]{1,5})d$")
MIN_YEAR = 1970
MAX_ROLLING_DAYS = 3660


@dataclass(frozen=True)
class Period:
    """A report period `[start, end)` and the instant `as_of` at which the report is made.

    Revenue is read at the last instant before `end`, or at `as_of` when that is earlier,
    so a period not yet over uses the revenue in force now.
    """

    label: str
    start: datetime
    end: datetime
    timezone: str
    as_of: datetime


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _add_months(year: int, month: int, months: int) -> date:
    index = year * 12 + (month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _year(label: str, digits: str) -> int:
    year = int(digits)
    if year < MIN_YEAR or year > 9998:
        raise invalid_query("query.period", label, f"the year must be from {MIN_YEAR} to 9998")
    return year


def _first_month(label: str, fiscal_year_start_month: int) -> tuple[date, int] | None:
    """Return the first day and the length in months of a calendar or fiscal period label.

    A fiscal year is named by the calendar year in which it ends: with a fiscal year
    starting in April, FY2027 runs from April 2026 to March 2027.
    """
    if match := _QUARTER.match(label):
        return date(_year(label, match[1]), 3 * int(match[2]) - 2, 1), 3
    if match := _MONTH.match(label):
        return date(_year(label, match[1]), int(match[2]), 1), 1
    if match := _YEAR.match(label):
        return date(_year(label, match[1]), 1, 1), 12
    fiscal_shift = 0 if fiscal_year_start_month == 1 else -12
    if match := _FISCAL_QUARTER.match(label):
        months = fiscal_shift + 3 * (int(match[2]) - 1)
        return _add_months(_year(label, match[1]), fiscal_year_start_month, months), 3
    if match := _FISCAL_YEAR.match(label):
        return _add_months(_year(label, match[1]), fiscal_year_start_month, fiscal_shift), 12
    return None


def _labelled_period(
    label: str, zone: ZoneInfo, timezone: str, fiscal_year_start_month: int, as_of: datetime
) -> Period:
    if match := _ROLLING.match(label):
        return _rolling_period(label, int(match[1]), zone, timezone, as_of)
    found = _first_month(label, fiscal_year_start_month)
    if found is None:
        raise invalid_query("query.period", label, f"expected {ACCEPTED_FORMS}")

    first, months = found
    last = _add_months(first.year, first.month, months)
    start, end = _local_midnight(first, zone), _local_midnight(last, zone)
    return Period(label, start, end, timezone, as_of)


def _rolling_period(
    label: str, days: int, zone: ZoneInfo, timezone: str, as_of: datetime
) -> Period:
    if days < 1 or days > MAX_ROLLING_DAYS:
        raise invalid_query(
            "query.period", label, f"a rolling window is 1 to {MAX_ROLLING_DAYS} days long"
        )
    end = as_of.astimezone(zone)
    # Python subtracts a timedelta from an aware datetime in wall-clock time, so the window
    # keeps its local time of day across a daylight saving change.
    start = end - timedelta(days=days)
    return Period(label, start, end, timezone, as_of)


# A timestamp whose offset lost its `+`, because a URL query decodes a bare `+` as a space.
_SPACE_FOR_PLUS = re.compile(r"[0-9] [0-9]{2}(:?[0-9]{2})?$")


def _parse_bound(value: str, zone: ZoneInfo, location: str) -> datetime:
    """Parse a date (local midnight) or a timestamp; a timestamp without offset is local."""
    text = value.strip()
    try:
        if len(text) == 10:
            return _local_midnight(date.fromisoformat(text), zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        reason = "expected an ISO 8601 date or timestamp such as 2026-01-01"
        if _SPACE_FOR_PLUS.search(text):
            reason += (
                "; a + in a URL query arrives as a space, so send the offset's + as %2B, "
                "or use Z for UTC"
            )
        raise invalid_query(location, value, reason) from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    try:
        return check_timestamp_range(moment)
    except ValueError as error:
        raise invalid_query(location, value, str(error)) from None


def current_quarter_label(now: datetime) -> str:
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def parse_as_of(value: str, timezone: str) -> datetime:
    """Parse the `as_of` query parameter; a timestamp without an offset is local time."""
    return _parse_bound(value, ZoneInfo(timezone), "query.as_of")


def resolve_period(
    period: str | None,
    start: str | None,
    end: str | None,
    *,
    timezone: str,
    now: datetime,
    fiscal_year_start_month: int = 1,
) -> Period:
    """Build the period a report asks for; with no parameters, the current quarter.

    `now` is the report's `as_of` instant: rolling windows end there, the current quarter
    is the one containing it, and revenue is read at it when the period ends later.
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
        return _labelled_period(label.strip(), zone, timezone, fiscal_year_start_month, now)
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise UnprocessableError(
            f"`{missing}` is missing; a custom period needs both `from` and `to`.",
            errors=[InvalidField(location=f"query.{missing}", message="field required")],
        )

    begin = _parse_bound(start, zone, "query.from")
    finish = _parse_bound(end, zone, "query.to")
    if finish <= begin:
        raise invalid_query("query.to", end, f"`to` must be later than `from` ({start})")
    return Period(f"{start.strip()}/{end.strip()}", begin, finish, timezone, now)
