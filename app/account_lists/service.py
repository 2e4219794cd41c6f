"""The at-risk list and the survey-next plan, as pages or as one CSV document.

Lists use keyset pagination: a cursor stores the sort name, the sort value and the
external id of a page's last row, and the next page starts after that position. A
cursor fits only the list, sort and period parameters it came from.
"""

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.account_lists import queries
from app.account_lists.schemas import (
    AtRiskItem,
    AtRiskSort,
    ContactItem,
    SurveyNextItem,
    SurveyNextSort,
)
from app.errors import InvalidField, UnprocessableError
from app.money import format_amount
from app.periods import Period
from app.reports.queries import quarter_state_applies
from app.reports.schemas import Level, Rollup
from app.reports.service import report_window, rollup_rule
from app.schemas import (
    Page,
    check_timestamp_range,
    decode_cursor,
    encode_cursor,
    text_problem,
)
from app.tenancy.models import Tenant

AT_RISK_COLUMNS = (
    "account_external_id",
    "name",
    "revenue",
    "score",
    "comment",
    "email",
    "submitted_at",
)
SURVEY_NEXT_COLUMNS = (
    "account_external_id",
    "name",
    "revenue",
    "cumulative_coverage",
    "reaches_target",
    "days_since_last_response",
    "contacts",
)


def _invalid_cursor(cursor: str) -> UnprocessableError:
    return UnprocessableError(
        f"Invalid cursor {cursor[:40]!r}; pass the `next_cursor` value of the previous page "
        "with the same `sort` and period parameters.",
        errors=[InvalidField(location="query.cursor", message="not a cursor of this list")],
    )


# The sort values a cursor may carry: revenue below 10^15 with at most 4 decimals (the
# most any currency has), and a score from 0 to 10.
_CURSOR_REVENUE = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,4})?")
_CURSOR_SCORE = re.compile(r"[0-9]|10")


def _parse_sort_value(column: str, text: str) -> Any:
    """Turn a cursor's sort value back into the column's type; raise ValueError if invalid."""
    if column == "revenue":
        # The page's own revenue, as `_cursor_after` wrote it: plain digits and a point.
        if not _CURSOR_REVENUE.fullmatch(text):
            raise ValueError(text)
        return Decimal(text)
    if column == "score":
        if not _CURSOR_SCORE.fullmatch(text):
            raise ValueError(text)
        return int(text)
    return check_timestamp_range(datetime.fromisoformat(text))


def _list_order(sort: str, cursor: str | None) -> queries.ListOrder:
    column = sort.removeprefix("-")
    descending = sort.startswith("-")
    # An empty cursor starts at the first page, as on the other lists.
    if not cursor:
        return queries.ListOrder(column=column, descending=descending)

    position: Any = None
    try:
        position = json.loads(decode_cursor(cursor, str))
    except (ValueError, RecursionError):
        raise _invalid_cursor(cursor) from None
    if (
        not isinstance(position, list)
        or len(position) != 3
        or position[0] != sort
        or not all(isinstance(part, str) for part in position)
        # The account id goes into a query: PostgreSQL text takes no NUL or lone surrogate.
        or text_problem(position[2]) is not None
    ):
        raise _invalid_cursor(cursor)
    try:
        after_value = _parse_sort_value(column, position[1])
    except (ValueError, InvalidOperation):
        raise _invalid_cursor(cursor) from None
    return queries.ListOrder(
        column=column,
        descending=descending,
        after_value=after_value,
        after_external_id=position[2],
    )


def _cursor_after(row: Any, sort: str) -> str:
    value = row[sort.removeprefix("-")]
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return encode_cursor(json.dumps([sort, text, row["account_external_id"]]))


def _split_page(rows: Sequence[Any], limit: int, sort: str) -> tuple[Sequence[Any], str | None]:
    """Cut the `limit + 1` fetched rows to a page; the extra row shows that more follow."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], _cursor_after(rows[limit - 1], sort)


def _at_risk_item(row: Any, currency: str) -> AtRiskItem:
    return AtRiskItem(
        account_external_id=row["account_external_id"],
        name=row["name"],
        revenue=format_amount(row["revenue"], currency),
        score=row["score"],
        comment=row["comment"],
        email=row["email"],
        submitted_at=row["submitted_at"],
    )


def _coverage(reached: Decimal, total: Decimal) -> float:
    # `total` is above 0, because every listed account is in the revenue base.
    return float((reached / total).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def _survey_next_item(row: Any, currency: str, as_of: datetime) -> SurveyNextItem:
    last_response_at = row["last_response_at"]
    days = None if last_response_at is None else (as_of - last_response_at) // timedelta(days=1)
    return SurveyNextItem(
        account_external_id=row["account_external_id"],
        name=row["name"],
        revenue=format_amount(row["revenue"], currency),
        cumulative_coverage=_coverage(row["reached_revenue"], row["total_revenue"]),
        reaches_target=row["reaches_target"],
        days_since_last_response=days,
        contacts=[ContactItem(**contact) for contact in row["contacts"] or []],
    )


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """Render the header and rows as CSV lines (RFC 4180 quoting, CRLF line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in (header, *rows):
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _text(value: object) -> object:
    """Render a CSV cell: empty for null, `true`/`false` for booleans as in JSON, and text
    that a spreadsheet would run as a formula prefixed with an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


async def at_risk_page(
    session: AsyncSession,
    tenant: Tenant,
    period: Period,
    *,
    rollup: Rollup | None,
    level: Level,
    sort: AtRiskSort,
    limit: int,
    cursor: str | None,
) -> Page[AtRiskItem]:
    """List one page of the period's at-risk accounts under `rollup` (default: the tenant's)."""
    order = _list_order(sort.value, cursor)
    window = report_window(tenant, period, level)
    from_state = await quarter_state_applies(session, tenant.id, [window])
    statement = queries.at_risk_statement(
        window, rollup_rule(tenant, rollup), order, limit + 1, from_state=from_state
    )
    rows, next_cursor = _split_page(await queries.fetch_rows(session, statement), limit, sort)
    currency = tenant.reporting_currency
    return Page(items=[_at_risk_item(row, currency) for row in rows], next_cursor=next_cursor)


async def at_risk_csv(
    session: AsyncSession,
    tenant: Tenant,
    period: Period,
    *,
    rollup: Rollup | None,
    level: Level,
    sort: AtRiskSort,
    cursor: str | None,
) -> Iterator[str]:
    """Render every at-risk account from the cursor's position on (all without one) as CSV."""
    order = _list_order(sort.value, cursor)
    window = report_window(tenant, period, level)
    from_state = await quarter_state_applies(session, tenant.id, [window])
    statement = queries.at_risk_statement(
        window, rollup_rule(tenant, rollup), order, None, from_state=from_state
    )
    # NOTE: the whole list is built in memory; it has at most one row per account.
    rows = await queries.fetch_rows(session, statement)
    items = (_at_risk_item(row, tenant.reporting_currency) for row in rows)
    return _csv_lines(
        AT_RISK_COLUMNS,
        ([_text(getattr(item, column)) for column in AT_RISK_COLUMNS] for item in items),
    )


async def survey_next_page(
    session: AsyncSession,
    tenant: Tenant,
    period: Period,
    *,
    level: Level,
    sort: SurveyNextSort,
    limit: int,
    cursor: str | None,
) -> Page[SurveyNextItem]:
    """List one page of the survey-next plan: the period's unaccounted base accounts."""
    order = _list_order(sort.value, cursor)
    window = report_window(tenant, period, level)
    from_state = await quarter_state_applies(session, tenant.id, [window])
    statement = queries.survey_next_statement(
        window, Decimal(tenant.coverage_target), order, limit + 1, from_state=from_state
    )
    rows, next_cursor = _split_page(await queries.fetch_rows(session, statement), limit, sort)
    currency = tenant.reporting_currency
    return Page(
        items=[_survey_next_item(row, currency, period.as_of) for row in rows],
        next_cursor=next_cursor,
    )


def _contacts_cell(contacts: Sequence[ContactItem]) -> str:
    """Render contacts as `email (role)` joined by `; `, a missing role as `none`."""
    return "; ".join(f"{contact.email} ({contact.role or 'none'})" for contact in contacts)


async def survey_next_csv(
    session: AsyncSession,
    tenant: Tenant,
    period: Period,
    *,
    level: Level,
    sort: SurveyNextSort,
    cursor: str | None,
) -> Iterator[str]:
    """Render the survey-next plan from the cursor's position on (all without one) as CSV."""
    order = _list_order(sort.value, cursor)
    window = report_window(tenant, period, level)
    from_state = await quarter_state_applies(session, tenant.id, [window])
    statement = queries.survey_next_statement(
        window, Decimal(tenant.coverage_target), order, None, from_state=from_state
    )
    rows = await queries.fetch_rows(session, statement)
    items = (_survey_next_item(row, tenant.reporting_currency, period.as_of) for row in rows)
    return _csv_lines(
        SURVEY_NEXT_COLUMNS,
        (
            [
                _text(item.account_external_id),
                _text(item.name),
                item.revenue,
                f"{item.cumulative_coverage:.4f}",
                _text(item.reaches_target),
                _text(item.days_since_last_response),
                _text(_contacts_cell(item.contacts)),
            ]
            for item in items
        ),
    )
