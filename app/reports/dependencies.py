import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from app.errors import InvalidField, UnprocessableError, invalid_query
from app.periods import ACCEPTED_FORMS, MIN_YEAR, Period, parse_as_of, resolve_period
from app.reports.schemas import Granularity, Level, Rollup, SegmentBy, SegmentDimension
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
LevelQuery = Annotated[
    Level,
    Query(
        description="`account` counts each account; `parent` counts each top-level account "
        "with all its descendants as one, summing their revenue and classifying the family "
        "by the roll-up rule over all their responses."
    ),
]


def resolve_timezone(tenant_timezone: str, override: str | None) -> str:
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
    """Resolve the period a report covers; the quarter containing `as_of` when none is given."""
    zone = resolve_timezone(tenant.timezone, timezone)
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
    """Resolve the period filter of a list; None when no period parameter is given."""
    if period is None and start is None and end is None:
        # Without a period, `timezone` and `as_of` change nothing, but invalid values are
        # still rejected.
        zone = resolve_timezone(tenant.timezone, timezone)
        if as_of is not None:
            parse_as_of(as_of, zone)
        return None
    return await report_period(tenant, period, start, end, timezone, as_of)


ReportPeriod = Annotated[Period, Depends(report_period)]
OptionalPeriod = Annotated[Period | None, Depends(optional_period)]


# The latest year a period label may name, as in app.periods.
MAX_YEAR = 9998
SEGMENT_FORMS = "`tier`, `region`, `industry`, `owner` or `attribute:<name>`"
MAX_ATTRIBUTE_NAME_LENGTH = 200


async def segment_by(
    by: Annotated[
        str,
        Query(
            description=f"What splits accounts into segments: {SEGMENT_FORMS}.",
            examples=["region", "attribute:plan"],
        ),
    ],
) -> SegmentBy:
    """Parse the `by` parameter of the segments report."""
    text = by.strip()
    dimension, separator, attribute = text.partition(":")
    if not separator and dimension in {"tier", "region", "industry", "owner"}:
        return SegmentBy(SegmentDimension(dimension))
    if separator and dimension == "attribute" and 0 < len(attribute) <= MAX_ATTRIBUTE_NAME_LENGTH:
        return SegmentBy(SegmentDimension.ATTRIBUTE, attribute)
    reason = (
        f"expected {SEGMENT_FORMS}, with an attribute name of 1 to "
        f"{MAX_ATTRIBUTE_NAME_LENGTH} characters"
    )
    raise invalid_query("query.by", by, reason)


MAX_TREND_PERIODS = 120
_QUARTER_LABEL = re.compile(r"^(FY)?([0-9]{4})-Q([1-4])$")
_MONTH_LABEL = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_LABEL_FORMS = {
    Granularity.QUARTER: "a quarter such as 2025-Q1, or a fiscal quarter such as FY2026-Q1",
    Granularity.MONTH: "a month such as 2025-01",
}


def _all_of(rejected: list[UnprocessableError]) -> UnprocessableError:
    """Combine the errors of several invalid parameters into one, so a client learns of
    all of them at once."""
    if len(rejected) == 1:
        return rejected[0]
    return UnprocessableError(
        " ".join(error.detail for error in rejected),
        errors=[field for error in rejected for field in error.errors or []],
    )


def _ordinal(label: str, granularity: Granularity, location: str) -> tuple[str, int]:
    """Return a label's fiscal prefix (`FY` or empty) and its count of periods since year 0."""
    pattern = _QUARTER_LABEL if granularity is Granularity.QUARTER else _MONTH_LABEL
    match = pattern.match(label)
    if match is None:
        reason = f"expected {_LABEL_FORMS[granularity]} for granularity {granularity.value}"
        raise invalid_query(location, label, reason)
    if granularity is Granularity.QUARTER:
        prefix, year, ordinal = match[1] or "", int(match[2]), int(match[3]) - 1
        periods_per_year = 4
    else:
        prefix, year, ordinal = "", int(match[1]), int(match[2]) - 1
        periods_per_year = 12
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise invalid_query(location, label, f"the year must be from {MIN_YEAR} to {MAX_YEAR}")
    return prefix, year * periods_per_year + ordinal


def _label(prefix: str, ordinal: int, granularity: Granularity) -> str:
    if granularity is Granularity.QUARTER:
        return f"{prefix}{ordinal // 4}-Q{ordinal % 4 + 1}"
    return f"{ordinal // 12}-{ordinal % 12 + 1:02d}"


def trend_labels(first: str, last: str, granularity: Granularity) -> list[str]:
    """List the period labels from `first` to `last`, both included.

    Raises UnprocessableError for a label of another form, `to` before `from`, calendar
    and fiscal labels mixed, or more than MAX_TREND_PERIODS periods.
    """
    bounds = []
    rejected: list[UnprocessableError] = []
    for label, location in ((first, "query.from"), (last, "query.to")):
        try:
            bounds.append(_ordinal(label.strip(), granularity, location))
        except UnprocessableError as error:
            rejected.append(error)
    if rejected:
        raise _all_of(rejected)
    (prefix, start), (last_prefix, stop) = bounds
    if prefix != last_prefix:
        raise invalid_query(
            "query.to", last, f"`from` and `to` must both be calendar or both fiscal ({first})"
        )
    if stop < start:
        raise invalid_query("query.to", last, f"`to` must not be before `from` ({first})")
    count = stop - start + 1
    if count > MAX_TREND_PERIODS:
        raise invalid_query(
            "query.to",
            last,
            f"a trend has at most {MAX_TREND_PERIODS} periods, and {first} to {last} "
            f"has {count}; narrow the range",
        )
    return [_label(prefix, ordinal, granularity) for ordinal in range(start, stop + 1)]


@dataclass(frozen=True)
class TrendRange:
    """The periods of a trend, oldest first, and their length."""

    periods: list[Period]
    granularity: Granularity


async def trend_periods(
    tenant: CurrentTenant,
    first: Annotated[
        str,
        Query(
            alias="from",
            description="First period of the trend, included: "
            f"{_LABEL_FORMS[Granularity.QUARTER]} (quarters), "
            f"or {_LABEL_FORMS[Granularity.MONTH]}.",
            examples=["2025-Q1"],
        ),
    ],
    last: Annotated[
        str,
        Query(alias="to", description="Last period of the trend, included.", examples=["2026-Q4"]),
    ],
    granularity: Annotated[
        Granularity, Query(description="Length of each period.")
    ] = Granularity.QUARTER,
    timezone: TimezoneQuery = None,
    as_of: AsOfQuery = None,
) -> TrendRange:
    """Resolve the periods of a trend, each as `/v1/coverage?period=<label>` resolves it."""
    # Every parameter is checked, so that one 422 names all the invalid ones.
    rejected: list[UnprocessableError] = []
    zone = tenant.timezone
    moment = datetime.now(UTC)
    labels: list[str] = []
    try:
        zone = resolve_timezone(tenant.timezone, timezone)
    except UnprocessableError as error:
        rejected.append(error)
    if as_of is not None:
        try:
            moment = parse_as_of(as_of, zone)
        except UnprocessableError as error:
            rejected.append(error)
    try:
        labels = trend_labels(first, last, granularity)
    except UnprocessableError as error:
        rejected.append(error)
    if rejected:
        raise _all_of(rejected)
    periods = [
        resolve_period(
            label,
            None,
            None,
            timezone=zone,
            now=moment,
            fiscal_year_start_month=tenant.fiscal_year_start_month,
        )
        for label in labels
    ]
    return TrendRange(periods=periods, granularity=granularity)


SegmentByQuery = Annotated[SegmentBy, Depends(segment_by)]
TrendPeriods = Annotated[TrendRange, Depends(trend_periods)]
