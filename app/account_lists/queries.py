"""Account list statements: the at-risk list and the survey-next plan, one statement each.

Both reuse the coverage report's CTE builders from `app.reports.queries`, so a list
names exactly the accounts that the coverage report of the same period counts, and the
roll-up rules live in one place.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    FromClause,
    Numeric,
    Select,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy import false as sql_false
from sqlalchemy import true as sql_true
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.accounts.models import Account
from app.contacts.models import Contact
from app.fx.service import missing_rate_as_error
from app.reports.models import AccountQuarterScore
from app.reports.queries import (
    ROLE_RANKS,
    ReportWindow,
    RollupRule,
    account_buckets_cte,
    account_map_cte,
    counted_cte,
    counted_select,
    response_origin,
    revenue_at_end_cte,
    scored_cte,
    scored_select,
    state_buckets_cte,
)
from app.responses.models import SurveyResponse


@dataclass(frozen=True)
class ListOrder:
    """The sort column of a list and the keyset position after which a page starts.

    Rows with equal sort values are ordered by `account_external_id` ascending, which is
    unique in a tenant, so the order is total and pages never skip or repeat a row.
    """

    column: str
    descending: bool
    after_value: Any = None
    after_external_id: str | None = None


def _sort_keys(rows: FromClause, order: ListOrder) -> list[ColumnElement[Any]]:
    """Build the ORDER BY of the list order: the sort column, then `account_external_id`."""
    key = rows.c[order.column]
    return [key.desc() if order.descending else key.asc(), rows.c.account_external_id.asc()]


def _after_position(
    key: ColumnElement[Any], external_id: ColumnElement[Any], order: ListOrder
) -> ColumnElement[bool]:
    """Build the condition that a row comes after the keyset position in the list order."""
    beyond = key < order.after_value if order.descending else key > order.after_value
    return or_(beyond, and_(key == order.after_value, external_id > order.after_external_id))


def _page(rows: Subquery, order: ListOrder, limit: int | None) -> Select[tuple[Any, ...]]:
    """Select the rows after the keyset position in the list order, at most `limit`."""
    statement = select(rows).order_by(*_sort_keys(rows, order))
    if order.after_external_id is not None:
        statement = statement.where(
            _after_position(rows.c[order.column], rows.c.account_external_id, order)
        )
    if limit is not None:
        statement = statement.limit(limit)
    return statement


def _account_names(window: ReportWindow) -> Any:
    return select(Account.id, Account.external_id, Account.name).where(
        Account.tenant_id == window.tenant_id
    )


def at_risk_statement(
    window: ReportWindow,
    rule: RollupRule,
    order: ListOrder,
    limit: int | None,
    *,
    from_state: bool = False,
) -> Select[tuple[Any, ...]]:
    """Build the statement for the at-risk accounts of the period, one row per account.

    An account is listed when its revenue in force at the period end is above 0 and the
    roll-up rule puts it in `at_risk`, exactly as in the coverage report. Its deciding
    response is the counted response with the lowest score, ties going to the newest
    (then the greater `response_id` and `source`). Under `latest` and `decision_maker`
    the rule counts one response, so that is the one. Revenue is in the tenant's
    reporting currency. With `from_state`, buckets come from the quarter state (see
    `quarter_state_applies`), and only the at-risk accounts' responses are ranked. A page
    (`limit`) that is not sorted by `submitted_at` ranks only its own accounts' responses.
    """
    if from_state and limit is not None and order.column != "submitted_at":
        return _at_risk_page_from_state(window, rule, order, limit)

    account_map = account_map_cte(window)
    revenue_at_end = revenue_at_end_cte(window, account_map)
    scored = scored_cte(window, account_map)
    if from_state:
        account_buckets = state_buckets_cte(window, rule)
        at_risk_ids = select(account_buckets.c.account_id).where(
            account_buckets.c.bucket == "at_risk"
        )
        at_risk_scored = (
            select(*scored.c).where(scored.c.account_id.in_(at_risk_ids)).cte("at_risk_scored")
        )
        counted = counted_cte(at_risk_scored, rule.rollup)
    else:
        counted = counted_cte(scored, rule.rollup)
        account_buckets = account_buckets_cte(counted, rule)
    deciding = _deciding_cte(window, counted)
    # PostgreSQL estimates one at-risk account and a few deciding responses, whatever the
    # numbers, and joining the two it rescanned one of them for each row of the other.
    # Grouping their rows by account reads each once. The bucket test sits above an outer
    # join, where it cannot be pushed into the buckets, so the revenue is read once too.
    bucket = func.coalesce(account_buckets.c.bucket, literal("unaccounted"))
    listed = (
        select(revenue_at_end.c.account_id, revenue_at_end.c.amount)
        .select_from(
            revenue_at_end.outerjoin(
                account_buckets, account_buckets.c.account_id == revenue_at_end.c.account_id
            )
        )
        .where(revenue_at_end.c.amount > 0, bucket == "at_risk")
        .subquery("listed")
    )
    response_columns = [deciding.c.score, deciding.c.comment, deciding.c.email]
    response_columns.append(deciding.c.submitted_at)
    parts = union_all(
        select(
            listed.c.account_id,
            listed.c.amount.label("revenue"),
            *(cast(null(), column.type).label(column.name) for column in response_columns),
            sql_true().label("listed"),
        ),
        select(
            deciding.c.account_id,
            cast(null(), Numeric).label("revenue"),
            *response_columns,
            sql_false().label("listed"),
        ),
    ).subquery("parts")
    # Each listed account has exactly one deciding response (both come from its counted
    # responses), so every max() below picks the one value there is.
    merged = (
        select(
            parts.c.account_id,
            func.max(parts.c.revenue).label("revenue"),
            *(func.max(parts.c[column.name]).label(column.name) for column in response_columns),
        )
        .group_by(parts.c.account_id)
        .having(func.bool_or(parts.c.listed))
        .subquery("merged")
    )
    accounts = _account_names(window).cte("account_names")
    rows = (
        select(
            accounts.c.external_id.label("account_external_id"),
            accounts.c.name,
            merged.c.revenue,
            *(merged.c[column.name] for column in response_columns),
        )
        .select_from(merged.join(accounts, accounts.c.id == merged.c.account_id))
        .subquery("at_risk")
    )
    return _page(rows, order, limit)


def _at_risk_page_from_state(
    window: ReportWindow, rule: RollupRule, order: ListOrder, limit: int
) -> Select[tuple[Any, ...]]:
    """Build the statement for one page of at-risk accounts sorted by revenue or score,
    from the quarter state.

    The state stores each account's bucket and deciding score (`lowest_score`), so the
    accounts are sorted and cut to the page before any response is read. Then one lateral
    subquery per page row ranks that account's responses, so the work beyond the sort
    does not grow with the number of accounts.
    """
    account_map = account_map_cte(window)
    revenue_at_end = revenue_at_end_cte(window, account_map)
    account_buckets = state_buckets_cte(window, rule)
    at_risk = (
        select(
            revenue_at_end.c.account_id,
            revenue_at_end.c.amount.label("revenue"),
            account_buckets.c.lowest_score.label("score"),
        )
        .select_from(
            revenue_at_end.join(
                account_buckets, account_buckets.c.account_id == revenue_at_end.c.account_id
            )
        )
        .where(revenue_at_end.c.amount > 0, account_buckets.c.bucket == "at_risk")
        .subquery("at_risk")
    )
    # Looking up every at-risk account's external id, the tie-breaker of the order, took
    # about a sixth of the statement at 1,000,000 accounts. The page's rows are among the
    # first `limit` by the sort column alone, counting every row that ties with the last,
    # so only those are looked up. After a keyset position the OR below stops at its first
    # true operand, so only the rows at the position's sort value look up their id.
    key = at_risk.c[order.column]
    candidates = select(at_risk).order_by(key.desc() if order.descending else key.asc())
    if order.after_external_id is not None:
        external_id = (
            select(Account.external_id)
            .where(Account.tenant_id == window.tenant_id, Account.id == at_risk.c.account_id)
            .scalar_subquery()
        )
        candidates = candidates.where(_after_position(key, external_id, order))
    ranked = candidates.fetch(limit, with_ties=True).subquery("ranked")
    listed = (
        select(
            ranked.c.account_id,
            Account.external_id.label("account_external_id"),
            Account.name,
            ranked.c.revenue,
            ranked.c.score,
        )
        .select_from(ranked)
        .join(
            Account, and_(Account.tenant_id == window.tenant_id, Account.id == ranked.c.account_id)
        )
        .subquery("listed")
    )
    page = _page(listed, order, limit).cte("page")

    # A lateral subquery per page row reads only that account's responses, through the
    # index on a response's account before any merge. The state applies only when no
    # account reports as another, so that account is the one the response counts for.
    own_scored = (
        scored_select(window, account_map)
        .add_columns(SurveyResponse.comment, SurveyResponse.email)
        .where(response_origin() == page.c.account_id)
        .correlate(page)
        .subquery("own_scored")
    )
    response_columns = [
        own_scored.c.comment,
        own_scored.c.email,
        own_scored.c.submitted_at,
        own_scored.c.response_id,
        own_scored.c.source,
    ]
    counted = (
        counted_select(own_scored, rule.rollup).add_columns(*response_columns).subquery("counted")
    )
    deciding = (
        select(counted.c.score, counted.c.comment, counted.c.email, counted.c.submitted_at)
        .order_by(
            counted.c.score.asc(),
            counted.c.submitted_at.desc(),
            counted.c.response_id.desc(),
            counted.c.source.desc(),
        )
        .limit(1)
        .lateral("deciding")
    )
    return (
        select(
            page.c.account_external_id,
            page.c.name,
            page.c.revenue,
            deciding.c.score,
            deciding.c.comment,
            deciding.c.email,
            deciding.c.submitted_at,
        )
        .select_from(page.outerjoin(deciding, sql_true()))
        .order_by(*_sort_keys(page, order))
    )


def _deciding_cte(window: ReportWindow, counted: CTE) -> CTE:
    """Select each account's deciding response among its counted ones: the lowest score,
    ties going to the newest (then the greater `response_id` and `source`)."""
    # Every counted response was submitted in the period. Saying so lets PostgreSQL read the
    # period's responses through the submitted_at index instead of all of the tenant's.
    return (
        select(
            counted.c.account_id,
            SurveyResponse.score,
            SurveyResponse.comment,
            SurveyResponse.email,
            SurveyResponse.submitted_at,
        )
        .select_from(
            counted.join(
                SurveyResponse,
                and_(
                    SurveyResponse.tenant_id == window.tenant_id,
                    SurveyResponse.id == counted.c.id,
                    SurveyResponse.submitted_at >= window.start,
                    SurveyResponse.submitted_at < window.end,
                ),
            )
        )
        .ext(distinct_on(counted.c.account_id))
        .order_by(
            counted.c.account_id,
            counted.c.score.asc(),
            SurveyResponse.submitted_at.desc(),
            SurveyResponse.response_id.desc(),
            SurveyResponse.source.desc(),
        )
        .cte("deciding")
    )


def _members(account_map: CTE, report_account_id: Any) -> Subquery:
    """Select (account_id) for every account that counts as the report account: that
    account itself, and every account the map sends there (merged away, or a child at
    `level=parent`).

    Joining the members, rather than testing `account_id = report OR account_id IN
    (mapped)`, lets PostgreSQL read each member's rows through its `account_id` index.
    """
    itself = select(report_account_id.label("account_id")).correlate_except(None)
    # Correlated explicitly: within a derived table SQLAlchemy does not correlate on its own.
    mapped = (
        select(account_map.c.account_id)
        .where(account_map.c.report_account_id == report_account_id)
        .correlate_except(account_map)
    )
    return itself.union_all(mapped).subquery("members")


def _contacts_by_seniority(account_map: CTE, report_account_id: Any, window: ReportWindow) -> Any:
    """Build a scalar subquery: the contacts of every account that counts as the report
    account, as a JSON array, most senior first.

    Seniority is `decision_maker`, `influencer`, `user`, then contacts without a role;
    contacts of one rank are ordered by email. A person linked to several members is
    listed once, with the most senior role. It is null when there is none.
    """
    rank = case(
        *((Contact.role == role.value, value) for role, value in ROLE_RANKS.items()),
        else_=0,
    )
    members = _members(account_map, report_account_id)
    people = (
        select(Contact.email, Contact.role, rank.label("rank"))
        .select_from(members)
        .join(
            Contact,
            and_(Contact.tenant_id == window.tenant_id, Contact.account_id == members.c.account_id),
        )
        .ext(distinct_on(Contact.email))
        .order_by(Contact.email, rank.desc())
        .correlate_except(Contact)
        .subquery("people")
    )
    contact = func.jsonb_build_object("email", people.c.email, "role", people.c.role)
    aggregate = func.jsonb_agg(
        aggregate_order_by(contact, people.c.rank.desc(), people.c.email), type_=JSONB
    )
    return select(aggregate).scalar_subquery()


def survey_next_statement(
    window: ReportWindow,
    target: Decimal,
    order: ListOrder,
    limit: int | None,
    *,
    from_state: bool = False,
) -> Select[tuple[Any, ...]]:
    """Build the statement for the survey-next plan: unaccounted base accounts.

    The revenue base and `unaccounted` are those of the coverage report: revenue in force
    at the period end above 0, and no scored response matched to the account submitted in
    the period. Which accounts are covered does not depend on the roll-up rule.

    The plan order is revenue descending, ties by `account_external_id` ascending.
    `reached_revenue` is the covered revenue plus the revenue of this account and every
    account before it in the plan order (a window sum), so `reached_revenue /
    total_revenue` is the coverage once they all answer. `reaches_target` compares
    `reached_revenue >= target x total_revenue` exactly, as the coverage report's
    `meets_target` does. The page order (`order`) does not change these figures.
    `last_response_at` is the account's latest scored response submitted at or before
    `as_of`, in any period, or null. Money is in the tenant's reporting currency.
    """
    account_map = account_map_cte(window)
    # `totals` sums every row, so every amount is converted without `convert_all`.
    revenue_at_end = revenue_at_end_cte(window, account_map, convert_all=False)
    covered: CTE
    if from_state:
        # An account has a state row for the quarter exactly when a scored response of
        # the period counts for it.
        covered = (
            select(AccountQuarterScore.account_id)
            .where(
                AccountQuarterScore.tenant_id == window.tenant_id,
                AccountQuarterScore.quarter_start == window.start,
            )
            .cte("covered")
        )
    else:
        scored = scored_cte(window, account_map)
        covered = (
            select(scored.c.account_id)
            .where(scored.c.account_id.is_not(None))
            .group_by(scored.c.account_id)
            .cte("covered")
        )
    base = (
        select(
            revenue_at_end.c.account_id,
            revenue_at_end.c.amount,
            covered.c.account_id.is_not(None).label("covered"),
        )
        .select_from(
            revenue_at_end.outerjoin(covered, covered.c.account_id == revenue_at_end.c.account_id)
        )
        .where(revenue_at_end.c.amount > 0)
        .cte("base")
    )
    totals = select(
        func.sum(base.c.amount).label("total_revenue"),
        func.coalesce(func.sum(base.c.amount).filter(base.c.covered), 0).label("covered_revenue"),
    ).cte("totals")
    accounts = _account_names(window).cte("account_names")

    running = func.sum(base.c.amount).over(
        order_by=(base.c.amount.desc(), accounts.c.external_id.asc()), rows=(None, 0)
    )
    reached = totals.c.covered_revenue + running
    target_revenue = literal(target, Numeric) * totals.c.total_revenue
    plan = (
        select(
            accounts.c.external_id.label("account_external_id"),
            accounts.c.name,
            base.c.account_id,
            base.c.amount.label("revenue"),
            totals.c.total_revenue,
            reached.label("reached_revenue"),
            (reached >= target_revenue).label("reaches_target"),
        )
        .select_from(
            base.join(accounts, accounts.c.id == base.c.account_id).join(totals, sql_true())
        )
        .where(base.c.covered.is_(False))
        .subquery("plan")
    )
    members = _members(account_map, plan.c.account_id)
    # A response counts for the member it belonged to before any merge moved it, as in
    # the coverage report: a merge not in force yet leaves it with the merged account. A
    # moved response sits at the member's survivor, so both are looked up by `account_id`.
    member_account = aliased(Account, name="member_account")
    last_response_at = (
        select(func.max(SurveyResponse.submitted_at))
        .select_from(members)
        .join(
            member_account,
            and_(
                member_account.tenant_id == window.tenant_id,
                member_account.id == members.c.account_id,
            ),
        )
        .join(
            SurveyResponse,
            and_(
                SurveyResponse.tenant_id == window.tenant_id,
                SurveyResponse.account_id
                == func.coalesce(member_account.survivor_id, members.c.account_id),
                response_origin() == members.c.account_id,
            ),
        )
        .where(
            SurveyResponse.score.is_not(None),
            SurveyResponse.submitted_at <= literal(window.as_of, DateTime(timezone=True)),
        )
        .scalar_subquery()
    )
    # The correlated subqueries sit in the select list, so PostgreSQL runs them only for
    # the rows that the LIMIT keeps.
    return _page(plan, order, limit).add_columns(
        last_response_at.label("last_response_at"),
        _contacts_by_seniority(account_map, plan.c.account_id, window).label("contacts"),
    )


async def fetch_rows(session: AsyncSession, statement: Select[tuple[Any, ...]]) -> list[Any]:
    """Run a list statement and return its rows as mappings."""
    with missing_rate_as_error():
        return list((await session.execute(statement)).mappings().all())
