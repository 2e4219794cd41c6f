"""Report statements: each report is one SQL statement built from shared CTEs.

Every roll-up rule works in two steps. First it picks the responses it counts for each
account (`counted_cte`), then it turns their scores into a bucket with aggregates
(`account_buckets_cte`). Scores are whole numbers from 0 to 10, so each rule compares sums
and counts as integers and never rounds before comparing.

Reports count "report accounts". `account_map_cte` maps an account that reports as
another one to it: a merged-away account to the account it was merged into once the
merge is in force, and at `level=parent` every account to its top-level ancestor.
`revenue_at_end_cte` and `scored_cte` apply the map, so the CTEs after them see report
accounts only.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    FromClause,
    Integer,
    Numeric,
    Select,
    Subquery,
    Text,
    and_,
    any_,
    case,
    cast,
    column,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union,
    union_all,
    values,
)
from sqlalchemy import true as sql_true
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import Grouping

from app.accounts.models import Account, RevenueRecord
from app.accounts.repository import MAX_HIERARCHY_DEPTH
from app.contacts.models import Contact, ContactRole
from app.fx.models import FxRate
from app.fx.service import missing_rate_as_error
from app.money import currency_exponent
from app.reports.models import AccountQuarterScore, RespondentQuarterScore
from app.reports.schemas import Level, Rollup
from app.responses.models import SurveyResponse
from app.tenancy.models import Tenant

BUCKETS = ("at_risk", "passive", "safe", "unaccounted")

# Seniority of a respondent's contact role at the account, for the `decision_maker` rule.
# A respondent without a contact role at the account ranks below every role.
ROLE_RANKS = {ContactRole.DECISION_MAKER: 3, ContactRole.INFLUENCER: 2, ContactRole.USER: 1}

_TIMESTAMP_ARRAY = ARRAY(DateTime(timezone=True))


@dataclass(frozen=True)
class RollupRule:
    """A roll-up rule with the tenant's thresholds for the `account_nps` rule."""

    rollup: Rollup
    account_nps_safe_above: int = 30
    account_nps_at_risk_below: int = 0


@dataclass(frozen=True)
class ReportWindow:
    """Whose responses and revenue a statement reads.

    Responses count when submitted in `[start, end)`. Revenue is the record in force at
    the last instant before `end`, or at `as_of` when that is earlier, converted into
    `reporting_currency` at the rate in force at the same instant. `level` says whether
    children count as their top-level parent.
    """

    tenant_id: uuid.UUID
    start: datetime
    end: datetime
    as_of: datetime
    reporting_currency: str
    level: Level = Level.ACCOUNT


@dataclass(frozen=True)
class CoverageTotals:
    """Aggregates behind one coverage report; money in the tenant's reporting currency."""

    total_revenue: Decimal
    total_accounts: int
    bucket_revenue: dict[str, Decimal]
    bucket_accounts: dict[str, int]
    promoters: int
    detractors: int
    respondents: int
    scored_responses: int
    unmatched_responses: int
    # Per bucket, the fewest accounts (largest first) whose revenue reaches half of the
    # bucket's revenue. A bucket without accounts has 0.
    accounts_for_half_revenue: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifiedResponse:
    source: str
    response_id: str
    email: str | None
    role: str | None
    score: int | None
    submitted_at: datetime
    counted: bool


@dataclass(frozen=True)
class AccountClassification:
    """One account's state in a period, as the report account it counts as there.

    `revenue` is None when the report account has no record in force, `bucket` is None
    when no scored response counts, and `value` is the rule's figure (the deciding score,
    the mean or the account NPS)."""

    report_account_id: int
    revenue: Decimal | None
    bucket: str | None
    value: Decimal | None
    responses: list[ClassifiedResponse]


def converted_amount(
    records: FromClause,
    tenant_id: uuid.UUID,
    reporting_currency: str,
    end: ColumnElement[datetime],
    as_of: ColumnElement[datetime],
) -> ColumnElement[Decimal]:
    """Convert the `amount` of each row of `records` from its `currency` into the reporting
    currency, at the rate in force at the revenue instant of the period ending at `end`.

    An amount of 0 or in the reporting currency needs no rate and stays as it is. Any
    other amount is multiplied by the tenant's rate for its currency quoted in the
    reporting currency. That rate is the one with the latest `effective_at` before `end`
    and not after `as_of`, the rule that picks revenue records too. The product is
    rounded half away from zero to the reporting currency's minor unit. This rounding is
    the only rounding of money in reports, so bucket sums add up exactly to the total.
    Without such a rate the database function `revcov_missing_fx_rate` raises SQLSTATE
    RVFX1, so the statement fails and never sums a total without the account.
    """
    rate = (
        select(FxRate.rate)
        .where(
            FxRate.tenant_id == tenant_id,
            FxRate.quote_currency == reporting_currency,
            FxRate.currency == records.c.currency,
            FxRate.effective_at < end,
            FxRate.effective_at <= as_of,
        )
        .order_by(FxRate.effective_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    # Shown in the error message, cut to the whole second: the last instant of the period,
    # or `as_of`. A rate effective at that second is in force for the period, also when
    # the period ends within a second (a custom range or an `as_of` with a fraction).
    revenue_instant = func.least(end - timedelta(microseconds=1), as_of)
    converted = func.coalesce(
        func.round(records.c.amount * rate, currency_exponent(reporting_currency), type_=Numeric),
        func.revcov_missing_fx_rate(records.c.currency, revenue_instant, type_=Numeric),
    )
    return case(
        (records.c.amount == 0, records.c.amount),
        (records.c.currency == reporting_currency, records.c.amount),
        else_=converted,
    )


def _merge_in_force(
    account: Any, end: ColumnElement[datetime], as_of: ColumnElement[datetime]
) -> ColumnElement[bool]:
    """Build the condition that the account was merged away by the revenue instant of the
    period ending at `end`, the instant at which revenue records are read."""
    return func.coalesce(and_(account.merged_at < end, account.merged_at <= as_of), False)


def _merged_away(
    tenant_id: uuid.UUID,
    account_id: Any,
    end: ColumnElement[datetime],
    as_of: ColumnElement[datetime],
) -> Select[Any]:
    """Select `account_id` when a merge in force at the revenue instant of the period ending
    at `end` moved it away.

    Few accounts are ever merged, so PostgreSQL reads them through the partial index on
    `merged_into_id` and anti-joins them, instead of joining every revenue record with
    `accounts`.
    """
    merged = aliased(Account, name="merged_account")
    return select(merged.id).where(
        merged.tenant_id == tenant_id,
        merged.merged_into_id.is_not(None),
        merged.id == account_id,
        _merge_in_force(merged, end, as_of),
    )


def _next_account(
    account: Any, level: Level, end: ColumnElement[datetime], as_of: ColumnElement[datetime]
) -> ColumnElement[Any]:
    """Build the account that `account` reports as, one step up, or null for none."""
    steps: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
        (_merge_in_force(account, end, as_of), account.merged_into_id)
    ]
    if level is Level.PARENT:
        steps.append((account.parent_id.is_not(None), account.parent_id))
    return case(*steps, else_=null())


def _account_map(tenant_id: uuid.UUID, level: Level, moments: CTE, keys: Sequence[str]) -> CTE:
    """Select (keys, account_id, report_account_id, merged_away) for every account that
    reports as another account at each row of `moments` (keys, period_end, as_of).

    A merged-away account goes to the account it was merged into once the merge is in
    force at the revenue instant (`merged_away` is then true), and at `level=parent` an
    account goes to its parent. The steps repeat up to the last account, so a chain of
    merges ends at the survivor of the time and a child at its top-level ancestor.
    Accounts that report as themselves have no row.
    NOTE: parents are not effective-dated, so past periods use today's hierarchy, while
    merges apply from their own `merged_at`.
    """
    key_columns = [moments.c[key] for key in keys]
    end, as_of = moments.c.period_end, moments.c.as_of
    first = _next_account(Account, level, end, as_of)
    has_step = (
        or_(Account.merged_into_id.is_not(None), Account.parent_id.is_not(None))
        if level is Level.PARENT
        else Account.merged_into_id.is_not(None)
    )
    hops = (
        select(
            *key_columns,
            end.label("period_end"),
            as_of.label("as_of"),
            Account.id.label("account_id"),
            first.label("report_account_id"),
            _merge_in_force(Account, end, as_of).label("merged_away"),
            literal(1).label("depth"),
        )
        .select_from(moments)
        .join(Account, and_(Account.tenant_id == tenant_id, has_step))
        .where(first.is_not(None))
        .cte(f"{moments.name}_hops", recursive=True)
    )
    upper = aliased(Account, name="upper_account")
    further = _next_account(upper, level, hops.c.period_end, hops.c.as_of)
    hops = hops.union_all(
        select(
            *(hops.c[key] for key in keys),
            hops.c.period_end,
            hops.c.as_of,
            hops.c.account_id,
            further,
            hops.c.merged_away,
            hops.c.depth + 1,
        )
        .select_from(hops)
        .join(upper, and_(upper.tenant_id == tenant_id, upper.id == hops.c.report_account_id))
        # The hierarchy and merge chains have no cycles; the depth bound is a safeguard.
        .where(further.is_not(None), hops.c.depth < MAX_HIERARCHY_DEPTH)
    )
    own_keys = [hops.c[key] for key in keys]
    return (
        select(*own_keys, hops.c.account_id, hops.c.report_account_id, hops.c.merged_away)
        .ext(distinct_on(*own_keys, hops.c.account_id))
        .order_by(*own_keys, hops.c.account_id, hops.c.depth.desc())
        .cte(f"{moments.name}_map")
    )


def account_map_cte(window: ReportWindow, name: str = "account") -> CTE:
    """Select the accounts that report as another account in the period (see `_account_map`).

    `name` prefixes the CTE names, so two periods can have maps in one statement.
    """
    moment = select(
        literal(window.end, DateTime(timezone=True)).label("period_end"),
        literal(window.as_of, DateTime(timezone=True)).label("as_of"),
    ).cte(name)
    return _account_map(window.tenant_id, window.level, moment, ())


def _report_account(account_map: CTE, account_id: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(account_map.c.report_account_id, account_id)


def _mapped_target(account_map: CTE, account_id: int) -> ColumnElement[Any]:
    """Build the report account of one account, as a scalar subquery."""
    mapped = (
        select(account_map.c.report_account_id)
        .where(account_map.c.account_id == account_id)
        .scalar_subquery()
    )
    return func.coalesce(mapped, account_id)


def revenue_at_end_cte(
    window: ReportWindow,
    account_map: CTE,
    account_id: int | None = None,
    *,
    convert_all: bool = True,
) -> CTE:
    """Select each report account's revenue in force at the report's revenue instant, in the
    reporting currency (see `converted_amount`).

    An account merged away by that instant is left out, because its revenue now belongs
    to the survivor's records. At `level=parent` a family's revenue is the sum of its
    accounts' converted amounts. With `account_id`, only that account's report account
    (itself, its survivor or its family) is selected. Every report reads revenue through
    this CTE or, for several periods at once, `_revenue_in_windows`, which converts the
    same way.

    With `convert_all` (see `_convert_all`) the first row read converts every amount, so
    a missing rate fails the statement whatever rows the plan reads. A statement that
    reads every row of this CTE anyway, such as one that sums them all, passes false and
    saves that pass.
    """
    statement = revenue_at_end_select(window, account_map, account_id, convert_all=convert_all)
    return statement.cte("revenue_at_end")


def revenue_at_end_select(
    window: ReportWindow,
    account_map: CTE,
    account_id: int | None = None,
    *,
    convert_all: bool = True,
) -> Select[Any]:
    """Build the statement of `revenue_at_end_cte`, for a caller that reads it once.

    PostgreSQL writes out the rows of a CTE that calls a volatile function, as the
    conversion does, even when the CTE is read once. A subquery of this statement passes
    its rows on instead.
    """
    end = literal(window.end, DateTime(timezone=True))
    as_of = literal(window.as_of, DateTime(timezone=True))
    statement = (
        select(RevenueRecord.account_id, RevenueRecord.amount, RevenueRecord.currency)
        .where(
            RevenueRecord.tenant_id == window.tenant_id,
            RevenueRecord.effective_at < window.end,
            RevenueRecord.effective_at <= window.as_of,
            ~_merged_away(window.tenant_id, RevenueRecord.account_id, end, as_of).exists(),
        )
        .ext(distinct_on(RevenueRecord.account_id))
        # Accounts in descending order, so that PostgreSQL can read the records newest
        # first through a backward scan of the primary key instead of sorting them: the
        # sort spilled to disk at 1,000,000 accounts and grew faster than the data.
        # NOTE: when the records are not cached, the scan reads the table backwards, which
        # the kernel's read-ahead does not help (9 s instead of 1.2 s once at that size).
        .order_by(RevenueRecord.account_id.desc(), RevenueRecord.effective_at.desc())
    )
    if account_id is not None and window.level is Level.ACCOUNT:
        statement = statement.where(
            RevenueRecord.account_id == _mapped_target(account_map, account_id)
        )
    # The conversion runs on the one record per account that DISTINCT ON keeps, so an
    # older record in a currency without a rate cannot fail the statement.
    latest = statement.subquery("latest_revenue")
    amount = converted_amount(latest, window.tenant_id, window.reporting_currency, end, as_of)
    converted = select(latest.c.account_id, amount.label("amount")).subquery("converted")
    if window.level is Level.ACCOUNT:
        if not convert_all:
            return select(*converted.c)
        return select(*converted.c, _convert_all(converted))

    # Summing reads every converted amount, so no `_convert_all` is needed here.
    family = _report_account(account_map, converted.c.account_id)
    families = (
        select(family.label("account_id"), func.sum(converted.c.amount).label("amount"))
        .select_from(
            converted.outerjoin(account_map, account_map.c.account_id == converted.c.account_id)
        )
        .group_by(family)
    )
    if account_id is not None:
        families = families.having(family == _mapped_target(account_map, account_id))
    return families


def _convert_all(converted: Subquery) -> ColumnElement[int]:
    """Count the converted amounts over all rows, so the first row read converts them all.

    Without it PostgreSQL converts only the rows a plan reads, and whether a report that
    lists some accounts fails for another account's missing rate would depend on the plan.
    The count is unused, but the volatile conversion keeps PostgreSQL from dropping it.
    NOTE: a plan that reads no row at all, such as a join with no at-risk account, still
    converts nothing, so such a report succeeds with its (correct) empty result.
    """
    return func.count(converted.c.amount).over().label("converted_accounts")


def _respondent_key() -> ColumnElement[Any]:
    return func.nullif(func.lower(func.btrim(SurveyResponse.email)), "")


def _role_rank() -> ColumnElement[Any]:
    return case(
        *((Contact.role == role.value, rank) for role, rank in ROLE_RANKS.items()),
        else_=0,
    )


def scored_cte(window: ReportWindow, account_map: CTE, account_id: int | None = None) -> CTE:
    """Select the scored responses submitted in the period, with respondent key and role rank.

    `account_id` is the report account (see `account_map_cte`) of the account the response
    belonged to before any merge moved it, so a period before a merge counts it for the
    merged-away account. With `account_id` given, only the responses of its report
    account are selected.
    """
    statement = scored_select(window, account_map)
    if account_id is not None:
        origin = response_origin()
        report_account = _report_account(account_map, origin)
        statement = statement.where(report_account == _mapped_target(account_map, account_id))
    return statement.cte("scored")


def response_origin() -> ColumnElement[Any]:
    """Build a response's account before any merge moved it."""
    return func.coalesce(SurveyResponse.merged_from_account_id, SurveyResponse.account_id)


def scored_select(window: ReportWindow, account_map: CTE) -> Select[Any]:
    """Select the scored responses submitted in the period, as `scored_cte` does for every
    account."""
    respondent = _respondent_key()
    role_rank = _role_rank()
    origin = response_origin()
    report_account = _report_account(account_map, origin)
    # The contact join adds no rows: a contact link's key is (tenant, email, account), and
    # the join fixes all three. The map has one row per account.
    return (
        select(
            SurveyResponse.id,
            report_account.label("account_id"),
            SurveyResponse.score,
            SurveyResponse.submitted_at,
            SurveyResponse.response_id,
            SurveyResponse.source,
            respondent.label("respondent"),
            role_rank.label("role_rank"),
        )
        .select_from(SurveyResponse)
        .outerjoin(
            Contact,
            and_(
                Contact.tenant_id == SurveyResponse.tenant_id,
                Contact.account_id == SurveyResponse.account_id,
                Contact.email == respondent,
            ),
        )
        .outerjoin(account_map, account_map.c.account_id == origin)
        .where(
            SurveyResponse.tenant_id == window.tenant_id,
            SurveyResponse.score.is_not(None),
            SurveyResponse.submitted_at >= window.start,
            SurveyResponse.submitted_at < window.end,
        )
    )


def _own_respondent(scored: FromClause) -> ColumnElement[Any]:
    # A response without an email is its own respondent, so its row id is its respondent key.
    return case((scored.c.respondent.is_(None), scored.c.id))


def _newest_first(scored: FromClause) -> list[ColumnElement[Any]]:
    """Order responses from the newest; ties go to the greater response id, then source."""
    return [scored.c.submitted_at.desc(), scored.c.response_id.desc(), scored.c.source.desc()]


def counted_cte(scored: CTE, rollup: Rollup, keys: Sequence[str] = ()) -> CTE:
    """Select the matched responses that the rule counts (see `counted_select`)."""
    return counted_select(scored, rollup, keys).cte("counted")


def counted_select(scored: FromClause, rollup: Rollup, keys: Sequence[str] = ()) -> Select[Any]:
    """Select the matched responses that the rule counts, one or more per account.

    - `latest`: the account's latest response.
    - `decision_maker`: the latest response of the most senior role that answered.
    - `average`, `lowest`, `account_nps`: each respondent's latest response.

    `keys` names further columns of `scored`, such as a period index, that split the
    responses into groups ranked on their own; the result carries them.
    """
    key_columns = [scored.c[key] for key in keys]
    account = [*key_columns, scored.c.account_id]
    statement = select(*key_columns, scored.c.id, scored.c.account_id, scored.c.score).where(
        scored.c.account_id.is_not(None)
    )
    if rollup is Rollup.LATEST:
        statement = statement.ext(distinct_on(*account)).order_by(*account, *_newest_first(scored))
    elif rollup is Rollup.DECISION_MAKER:
        statement = statement.ext(distinct_on(*account)).order_by(
            *account, scored.c.role_rank.desc(), *_newest_first(scored)
        )
    else:
        own_respondent = _own_respondent(scored)
        statement = statement.ext(
            distinct_on(*account, scored.c.respondent, own_respondent)
        ).order_by(*account, scored.c.respondent, own_respondent, *_newest_first(scored))
    return statement


def _bucket_and_value(
    rule: RollupRule,
    responses: ColumnElement[Any],
    total: ColumnElement[Any],
    lowest: ColumnElement[Any],
    net_promoters: ColumnElement[Any],
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Build a covered account's bucket and the rule's figure from its counted responses.

    `responses` counts them, `total` sums and `lowest` is the minimum of their scores, and
    `net_promoters` is 100 x (promoters - detractors). `lowest` is the deciding score of
    the rules that count one response.
    """
    bucket: ColumnElement[Any]
    value: ColumnElement[Any]
    if rule.rollup is Rollup.AVERAGE:
        bucket = case(
            (total >= 9 * responses, literal("safe")),
            (total >= 7 * responses, literal("passive")),
            else_=literal("at_risk"),
        )
        value = cast(total, Numeric) / responses
    elif rule.rollup is Rollup.ACCOUNT_NPS:
        bucket = case(
            (net_promoters > rule.account_nps_safe_above * responses, literal("safe")),
            (net_promoters < rule.account_nps_at_risk_below * responses, literal("at_risk")),
            else_=literal("passive"),
        )
        value = cast(net_promoters, Numeric) / responses
    else:
        bucket = case(
            (lowest <= 6, literal("at_risk")),
            (lowest <= 8, literal("passive")),
            else_=literal("safe"),
        )
        value = cast(lowest, Numeric)
    return bucket, value


def account_buckets_cte(counted: CTE, rule: RollupRule, keys: Sequence[str] = ()) -> CTE:
    """Aggregate the counted responses into each covered account's bucket and the rule's figure.

    - `latest`, `lowest`, `decision_maker`: the lowest counted score (the only one, except
      under `lowest`): 0-6 `at_risk`, 7-8 `passive`, 9-10 `safe`.
    - `average`: the mean of the counted scores: at least 9 `safe`, at least 7 `passive`,
      else `at_risk`, compared as sum >= 9 x count, so without rounding.
    - `account_nps`: 100 x (promoters - detractors) / respondents: above the safe
      threshold `safe`, below the at-risk threshold `at_risk`, else `passive`, compared as
      100 x (promoters - detractors) against threshold x respondents.

    `keys` names further grouping columns of `counted`, as in `counted_cte`.
    """
    account = [*(counted.c[key] for key in keys), counted.c.account_id]
    net_promoters = 100 * (
        func.count().filter(counted.c.score >= 9) - func.count().filter(counted.c.score <= 6)
    )
    bucket, value = _bucket_and_value(
        rule, func.count(), func.sum(counted.c.score), func.min(counted.c.score), net_promoters
    )
    return (
        select(*account, bucket.label("bucket"), value.label("value"))
        .group_by(*account)
        .cte("account_buckets")
    )


def _state_lowest_score(rule: RollupRule) -> ColumnElement[Any]:
    """Return the lowest score that the rule counts in an `account_quarter_scores` row,
    which is also the deciding score of the at-risk list."""
    scores = AccountQuarterScore.__table__.c
    lowest: ColumnElement[Any] = {
        Rollup.LATEST: scores.latest_score,
        Rollup.DECISION_MAKER: scores.senior_score,
    }.get(rule.rollup, scores.min_score)
    return lowest


def _state_bucket_and_value(rule: RollupRule) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Build the bucket and the rule's figure of an `account_quarter_scores` row."""
    scores = AccountQuarterScore.__table__.c
    return _bucket_and_value(
        rule,
        scores.respondents,
        scores.score_sum,
        _state_lowest_score(rule),
        100 * (scores.promoters - scores.detractors),
    )


def state_buckets_cte(window: ReportWindow, rule: RollupRule) -> CTE:
    """Select each covered account's bucket, the rule's figure and its lowest counted score
    (`lowest_score`, the deciding score of the at-risk list) from the quarter state.

    The rows are those `account_buckets_cte` computes from the responses, read from
    `account_quarter_scores` (see `app.reports.models`) for the window's quarter. The
    caller checks that the window is a quarter of the state's grid and that no account
    reports as another (`quarter_state_applies`).
    """
    state = AccountQuarterScore
    bucket, value = _state_bucket_and_value(rule)
    return (
        select(
            state.account_id,
            bucket.label("bucket"),
            value.label("value"),
            _state_lowest_score(rule).label("lowest_score"),
        )
        .where(state.tenant_id == window.tenant_id, state.quarter_start == window.start)
        .cte("account_buckets")
    )


def _state_respondent_totals(
    tenant_id: uuid.UUID,
    quarters: FromClause | None,
    window: ReportWindow | None,
    starts: Sequence[datetime] = (),
) -> Subquery:
    """Select the respondent and response counts of each quarter from the quarter state.

    The counts are those `coverage_statement` computes from the scored responses: each
    respondent once with its newest score, and all scored and unmatched responses. With
    `quarters`, the rows of the periods, `starts` lists their starts.
    """
    state = RespondentQuarterScore
    figures = [
        func.count().filter(state.latest_score >= 9).label("promoters"),
        func.count().filter(state.latest_score <= 6).label("detractors"),
        func.count().label("respondents"),
        func.coalesce(func.sum(state.scored_responses), 0).label("scored_responses"),
        func.coalesce(func.sum(state.unmatched_responses), 0).label("unmatched_responses"),
    ]
    if quarters is None:
        assert window is not None
        return (
            select(*figures)
            .where(state.tenant_id == tenant_id, state.quarter_start == window.start)
            .subquery("respondent_totals")
        )
    # Grouped by quarter before the join with the periods: a hash aggregate of a few
    # groups, where grouping the joined rows by period sorted every respondent row
    # (about 4.3 million for 8 quarters of the benchmark's large tenant). The starts are
    # a constant array, not a semi join with the periods: at 1,000,000 accounts on
    # PostgreSQL 15, the trend of 8 quarters took 8.4 s with the array and 9.2 s with
    # the join.
    by_quarter = (
        select(state.quarter_start, *figures)
        .where(
            state.tenant_id == tenant_id,
            state.quarter_start == any_(literal(list(starts), _TIMESTAMP_ARRAY)),
        )
        .group_by(state.quarter_start)
        .subquery("respondent_quarters")
    )
    return (
        select(
            quarters.c.period_index,
            *(column for column in by_quarter.c if column.name != "quarter_start"),
        )
        .select_from(quarters)
        .join(by_quarter, by_quarter.c.quarter_start == quarters.c.period_start)
        .subquery("respondent_totals")
    )


def quarter_state_statement(
    tenant_id: uuid.UUID, windows: Sequence[ReportWindow]
) -> Select[tuple[bool]]:
    """Build the check that the quarter state can serve the reports of every window.

    Each window must be one quarter of the tenant's current grid, as the database
    computes it, so that the state's quarters and the window hold the same responses.
    No account may be merged away by the window's revenue instant, because the state
    counts responses for the account they belonged to before a merge. The caller also
    requires `level=account`.
    """
    tenant = aliased(Tenant)
    rows = _window_rows(windows)

    def quarter_start(instant: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.revcov_quarter_start(
            instant, tenant.timezone, tenant.fiscal_year_start_month, type_=DateTime(timezone=True)
        )

    merged = select(Account.id).where(
        Account.tenant_id == tenant_id,
        Account.merged_into_id.is_not(None),
        _merge_in_force(Account, rows.c.period_end, rows.c.as_of),
    )
    applies = and_(
        quarter_start(rows.c.period_start) == rows.c.period_start,
        quarter_start(rows.c.period_end) == rows.c.period_end,
        quarter_start(rows.c.period_end - timedelta(microseconds=1)) == rows.c.period_start,
        ~merged.exists(),
    )
    return (
        select(func.coalesce(func.bool_and(applies), False))
        .select_from(rows)
        .join(tenant, tenant.id == tenant_id)
    )


async def quarter_state_applies(
    session: AsyncSession, tenant_id: uuid.UUID, windows: Sequence[ReportWindow]
) -> bool:
    """Return whether the reports of `windows` can read the quarter state."""
    if any(window.level is not Level.ACCOUNT for window in windows):
        return False
    return bool(await session.scalar(quarter_state_statement(tenant_id, windows)))


def coverage_statement(
    window: ReportWindow, rule: RollupRule, *, from_state: bool = False
) -> Select[tuple[object, ...]]:
    """Build the coverage statement for the half-open period `[start, end)`.

    - Revenue base: each account's record with the latest `effective_at` before `end` and
      not after `as_of`, kept when its amount is above 0. Records arriving out of order
      do not matter.
    - Bucket: by the roll-up rule (see `counted_cte` and `account_buckets_cte`) over the
      account's scored responses submitted in the period; ties between responses at one
      instant go to the greater `response_id`, then the greater `source`. Base accounts
      without one are `unaccounted`. Null scores never count.
    - Respondents: each email (case-insensitive, blank as none) counts once with its latest
      scored response in the period, matched to an account or not; a response without an
      email is a respondent of its own. This part does not depend on the rule.

    With `from_state`, buckets and respondent counts come from the quarter state, which
    gives the same figures when `quarter_state_applies` holds for the window.
    """
    account_map = account_map_cte(window)
    # The revenue and the classification stream into `binned`, the CTE in `_ranked` that
    # is read twice. As CTEs, their rows (1,000,000 at full size) were written out and read
    # back once more, because the volatile conversion keeps PostgreSQL from inlining them.
    revenue_at_end = revenue_at_end_select(window, account_map, convert_all=False).subquery(
        "revenue_at_end"
    )
    if from_state:
        account_buckets = state_buckets_cte(window, rule)
    else:
        scored = scored_cte(window, account_map)
        account_buckets = account_buckets_cte(counted_cte(scored, rule.rollup), rule)
    classified = (
        select(
            revenue_at_end.c.account_id,
            revenue_at_end.c.amount,
            func.coalesce(account_buckets.c.bucket, literal("unaccounted")).label("bucket"),
        )
        .select_from(
            revenue_at_end.outerjoin(
                account_buckets, account_buckets.c.account_id == revenue_at_end.c.account_id
            )
        )
        .where(revenue_at_end.c.amount > 0)
        .subquery("classified")
    )
    account_totals = select(*_account_aggregates(_ranked(classified))).subquery("account_totals")
    if from_state:
        response_figures = _state_respondent_totals(window.tenant_id, None, window)
        return select(account_totals, response_figures).select_from(
            account_totals.join(response_figures, sql_true())
        )

    own_respondent = _own_respondent(scored)
    latest_by_respondent = (
        select(scored.c.score)
        .ext(distinct_on(scored.c.respondent, own_respondent))
        .order_by(scored.c.respondent, own_respondent, *_newest_first(scored))
        .cte("latest_by_respondent")
    )
    respondent_totals = select(
        func.count().filter(latest_by_respondent.c.score >= 9).label("promoters"),
        func.count().filter(latest_by_respondent.c.score <= 6).label("detractors"),
        func.count().label("respondents"),
    ).subquery("respondent_totals")
    response_totals = select(
        func.count().label("scored_responses"),
        func.count().filter(scored.c.account_id.is_(None)).label("unmatched_responses"),
    ).subquery("response_totals")

    return select(account_totals, respondent_totals, response_totals).select_from(
        account_totals.join(respondent_totals, sql_true()).join(response_totals, sql_true())
    )


# Upper bounds of the revenue bins that `_ranked` sums accounts into: 16 per power of two,
# from 2^-16 (below 0.0001, the smallest stored amount) to 2^64 (above the largest).
# Larger amounts share the last bin, which stays correct but no longer saves work.
_BIN_BOUNDS = tuple(2.0 ** (step / 16) for step in range(-16 * 16, 64 * 16 + 1))


def _ranked(classified: FromClause, keys: Sequence[str] = ()) -> CTE:
    """Sum the base accounts into revenue bins per group and bucket: (keys, bucket, bin,
    accounts, revenue, half_accounts).

    `half_accounts` counts the bin's accounts whose larger peers in the bucket and group
    hold less than half of the bucket's revenue. Accounts rank by revenue descending, ties
    by account id. Equal amounts may rank in any order without changing how many accounts
    reach half of the bucket's revenue.

    Sorting every account by its NUMERIC amount costs more than the whole revenue sum, so
    accounts go into revenue bins instead. The bin comes from `width_bucket` over the
    amount as a whole float8 number (`_revenue_bin`), which never decreases as the amount
    grows, so every account of a higher bin has a larger amount. Summing each bin exactly
    (hash aggregation) then decides every bin but the one per bucket and group where the
    running total crosses half, and only the accounts of that bin are sorted, by their
    exact amounts.
    """
    binned = select(classified, _revenue_bin(classified.c.amount).label("bin")).cte("binned")

    group = [*(binned.c[key] for key in keys), binned.c.bucket]
    bins = (
        select(
            *group,
            binned.c.bin,
            func.count().label("accounts"),
            func.sum(binned.c.amount).label("revenue"),
        )
        .group_by(*group, binned.c.bin)
        .subquery("bins")
    )

    def crossing_members(crossing: CTE) -> Subquery:
        # The IN filter keeps the join to the few accounts of crossing bins.
        return (
            select(
                *(binned.c[key] for key in keys),
                binned.c.bucket,
                binned.c.bin,
                binned.c.amount,
                binned.c.account_id,
            )
            .where(binned.c.bin.in_(select(crossing.c.bin)))
            .subquery("crossing_members")
        )

    return _rank_bins(bins, crossing_members, keys)


def _revenue_bin(amount: ColumnElement[Any]) -> ColumnElement[int]:
    """Build the revenue bin of an amount above 0 (see `_ranked`).

    The amount is rounded to a whole number first. Rounding keeps the order that bins
    need (a larger amount never gets a lower bin), and PostgreSQL casts NUMERIC to bigint
    with integer arithmetic but to float8 through its text form. For the 2.5 million
    revenue records of the benchmark's large tenant, binning through bigint cost about
    half as much as the direct cast. Amounts from 2^62 on share the last bin.
    """
    bounds = literal(list(_BIN_BOUNDS), ARRAY(Float(precision=53)))
    largest = literal(2**62, BigInteger)
    whole = case((amount < largest, cast(amount, BigInteger)), else_=largest)
    return func.width_bucket(cast(whole, Float(precision=53)), bounds)


def _rank_bins(
    bins: FromClause, crossing_members: Callable[[CTE], FromClause], keys: Sequence[str]
) -> CTE:
    """Find how many accounts of each bin reach half of their bucket's revenue (see `_ranked`).

    `bins` contains (keys, bucket, bin, accounts, revenue) for every bin with accounts.
    `crossing_members` builds, from the CTE of crossing bins (keys, bucket, bin, ...),
    the rows (keys, bucket, bin, amount, account_id) of at least every account in them.
    """
    bin_group = [*(bins.c[key] for key in keys), bins.c.bucket]
    bin_bounds = select(
        bins,
        func.coalesce(
            func.sum(bins.c.revenue).over(
                partition_by=bin_group, order_by=bins.c.bin.desc(), rows=(None, -1)
            ),
            0,
        ).label("bins_before"),
        func.sum(bins.c.revenue).over(partition_by=bin_group).label("bucket_revenue"),
    ).cte("bin_bounds")
    # Each bucket and group with accounts has exactly one crossing bin, because every
    # amount is above 0. Every account of a higher bin is in the first half, and no
    # account of a lower bin is.
    bins_through = bin_bounds.c.bins_before + bin_bounds.c.revenue
    crossing = (
        select(bin_bounds)
        .where(
            2 * bin_bounds.c.bins_before < bin_bounds.c.bucket_revenue,
            2 * bins_through >= bin_bounds.c.bucket_revenue,
        )
        .cte("crossing")
    )

    members = crossing_members(crossing)
    in_crossing_bin = (
        select(
            *(members.c[key] for key in keys),
            members.c.bucket,
            members.c.bin,
            members.c.amount,
            members.c.account_id,
            crossing.c.bins_before,
            crossing.c.bucket_revenue,
        )
        .select_from(
            members.join(
                crossing,
                and_(
                    *(_same_key(crossing.c[key], members.c[key]) for key in keys),
                    crossing.c.bucket == members.c.bucket,
                    crossing.c.bin == members.c.bin,
                ),
            )
        )
        .subquery("in_crossing_bin")
    )
    # Within the crossing bin the float8 key orders almost every pair, and the exact amount
    # and the account id order the rest, as the NUMERIC order alone would.
    crossing_group = [*(in_crossing_bin.c[key] for key in keys), in_crossing_bin.c.bucket]
    revenue_before_in_bin = func.sum(in_crossing_bin.c.amount).over(
        partition_by=crossing_group,
        order_by=[
            cast(in_crossing_bin.c.amount, Float(precision=53)).desc(),
            in_crossing_bin.c.amount.desc(),
            in_crossing_bin.c.account_id,
        ],
        rows=(None, -1),
    )
    revenue_before = in_crossing_bin.c.bins_before + func.coalesce(revenue_before_in_bin, 0)
    crossing_accounts = select(
        *crossing_group,
        (2 * revenue_before < in_crossing_bin.c.bucket_revenue).label("in_first_half"),
    ).subquery("crossing_accounts")
    crossing_half = (
        select(
            *(crossing_accounts.c[key] for key in keys),
            crossing_accounts.c.bucket,
            func.count().filter(crossing_accounts.c.in_first_half).label("half_accounts"),
        )
        .group_by(*(crossing_accounts.c[key] for key in keys), crossing_accounts.c.bucket)
        .subquery("crossing_half")
    )

    half_accounts = case(
        (2 * bins_through < bin_bounds.c.bucket_revenue, bin_bounds.c.accounts),
        (2 * bin_bounds.c.bins_before >= bin_bounds.c.bucket_revenue, 0),
        else_=crossing_half.c.half_accounts,
    )
    same_crossing = and_(
        *(_same_key(crossing_half.c[key], bin_bounds.c[key]) for key in keys),
        crossing_half.c.bucket == bin_bounds.c.bucket,
    )
    return (
        select(
            *(bin_bounds.c[key] for key in keys),
            bin_bounds.c.bucket,
            bin_bounds.c.accounts,
            bin_bounds.c.revenue,
            half_accounts.label("half_accounts"),
        )
        .select_from(bin_bounds.outerjoin(crossing_half, same_crossing))
        .cte("ranked")
    )


def _same_key(left: ColumnElement[Any], right: ColumnElement[Any]) -> ColumnElement[bool]:
    """Match two group keys of one type, a null key matching only a null key.

    Like `_same_group`, but without the cast to text, which costs more than the rest of a
    join over every base account of 8 periods.
    """
    blank = literal(0) if isinstance(left.type, Integer) else literal("", Text)
    return and_(
        func.coalesce(left, blank) == func.coalesce(right, blank),
        left.is_(None) == right.is_(None),
    )


def _account_aggregates(ranked: CTE) -> list[ColumnElement[Any]]:
    """Aggregate the revenue bins of `_ranked` into total and per-bucket revenue and account
    counts.

    `<bucket>_half_accounts` counts the accounts that, taken largest first, are needed to
    reach half of the bucket's revenue: those whose larger peers hold less than half.
    """

    def count(column: ColumnElement[Any], *where: ColumnElement[bool]) -> ColumnElement[Any]:
        total = func.sum(column).filter(*where) if where else func.sum(column)
        return cast(func.coalesce(total, 0), BigInteger)

    bucket = ranked.c.bucket
    return [
        func.coalesce(func.sum(ranked.c.revenue), 0).label("total_revenue"),
        count(ranked.c.accounts).label("total_accounts"),
        *(
            func.coalesce(func.sum(ranked.c.revenue).filter(bucket == name), 0).label(
                f"{name}_revenue"
            )
            for name in BUCKETS
        ),
        *(count(ranked.c.accounts, bucket == name).label(f"{name}_accounts") for name in BUCKETS),
        *(
            count(ranked.c.half_accounts, bucket == name).label(f"{name}_half_accounts")
            for name in BUCKETS
        ),
    ]


def _totals_from_row(row: RowMapping) -> CoverageTotals:
    return CoverageTotals(
        total_revenue=Decimal(row["total_revenue"]),
        total_accounts=row["total_accounts"],
        bucket_revenue={name: Decimal(row[f"{name}_revenue"]) for name in BUCKETS},
        bucket_accounts={name: row[f"{name}_accounts"] for name in BUCKETS},
        promoters=row["promoters"],
        detractors=row["detractors"],
        respondents=row["respondents"],
        scored_responses=row["scored_responses"],
        unmatched_responses=row["unmatched_responses"],
        accounts_for_half_revenue={name: row[f"{name}_half_accounts"] for name in BUCKETS},
    )


async def coverage_totals(
    session: AsyncSession, window: ReportWindow, rule: RollupRule
) -> CoverageTotals:
    from_state = await quarter_state_applies(session, window.tenant_id, [window])
    statement = coverage_statement(window, rule, from_state=from_state)
    with missing_rate_as_error():
        row = (await session.execute(statement)).mappings().one()
    return _totals_from_row(row)


def classification_statement(
    window: ReportWindow, rule: RollupRule, account_id: int
) -> Select[tuple[object, ...]]:
    """Build the statement for one account's classification in the period.

    The account is classified as its report account (see `account_map_cte`): itself, the
    survivor of a merge in force, or at `level=parent` its top-level family.
    It returns one row per response of the report account submitted in the period, scored
    or not, in submission order; with no response it returns one row whose response
    columns are null. Every row repeats the report account's id, revenue, bucket and the
    rule's figure, which come from the same CTEs as the coverage statement. `counted`
    marks the responses the rule used; a null score is never counted.
    """
    account_map = account_map_cte(window)
    revenue_at_end = revenue_at_end_cte(window, account_map, account_id)
    scored = scored_cte(window, account_map, account_id)
    counted = counted_cte(scored, rule.rollup)
    account_buckets = account_buckets_cte(counted, rule)
    target = _mapped_target(account_map, account_id)
    origin = func.coalesce(SurveyResponse.merged_from_account_id, SurveyResponse.account_id)
    summary = select(
        target.label("report_account_id"),
        select(revenue_at_end.c.amount).scalar_subquery().label("revenue"),
        select(account_buckets.c.bucket).scalar_subquery().label("bucket"),
        select(account_buckets.c.value).scalar_subquery().label("value"),
    ).subquery("summary")
    responses = (
        select(
            SurveyResponse.id,
            SurveyResponse.source,
            SurveyResponse.response_id,
            SurveyResponse.email,
            Contact.role,
            SurveyResponse.score,
            SurveyResponse.submitted_at,
        )
        .select_from(SurveyResponse)
        .outerjoin(
            Contact,
            and_(
                Contact.tenant_id == SurveyResponse.tenant_id,
                Contact.account_id == SurveyResponse.account_id,
                Contact.email == SurveyResponse.email_key,
            ),
        )
        .outerjoin(account_map, account_map.c.account_id == origin)
        .where(
            SurveyResponse.tenant_id == window.tenant_id,
            _report_account(account_map, origin) == target,
            SurveyResponse.submitted_at >= window.start,
            SurveyResponse.submitted_at < window.end,
        )
        .subquery("account_responses")
    )
    return (
        select(
            summary,
            responses.c.source,
            responses.c.response_id,
            responses.c.email,
            responses.c.role,
            responses.c.score,
            responses.c.submitted_at,
            counted.c.id.is_not(None).label("counted"),
        )
        .select_from(
            summary.outerjoin(responses, sql_true()).outerjoin(
                counted, counted.c.id == responses.c.id
            )
        )
        .order_by(responses.c.submitted_at, responses.c.response_id, responses.c.source)
    )


async def account_classification(
    session: AsyncSession, window: ReportWindow, rule: RollupRule, account_id: int
) -> AccountClassification:
    statement = classification_statement(window, rule, account_id)
    with missing_rate_as_error():
        rows = (await session.execute(statement)).mappings().all()
    first = rows[0]
    return AccountClassification(
        report_account_id=first["report_account_id"],
        revenue=None if first["revenue"] is None else Decimal(first["revenue"]),
        bucket=first["bucket"],
        value=None if first["value"] is None else Decimal(first["value"]),
        responses=[
            ClassifiedResponse(
                source=row["source"],
                response_id=row["response_id"],
                email=row["email"],
                role=row["role"],
                score=row["score"],
                submitted_at=row["submitted_at"],
                counted=row["counted"],
            )
            for row in rows
            if row["response_id"] is not None
        ],
    )


@dataclass(frozen=True)
class TierBand:
    """A revenue tier: revenue from `min_revenue` (inclusive) up to the next tier's."""

    label: str
    min_revenue: Decimal


@dataclass(frozen=True)
class SegmentKey:
    """The account field, attribute or revenue tiers that split accounts into segments.

    `dimension` is `tier`, `region`, `industry`, `owner` or `attribute`. `attribute` names
    the key in the accounts' attributes, and `tiers` lists the revenue tiers, lowest first.
    """

    dimension: str
    attribute: str | None = None
    tiers: tuple[TierBand, ...] = ()


@dataclass(frozen=True)
class SegmentTotals:
    """One segment's aggregates, with `segment` None for accounts without a value."""

    segment: str | None
    totals: CoverageTotals


def _blank_as_null(value: Any) -> ColumnElement[Any]:
    return func.nullif(func.btrim(value), "")


def _segment_value(key: SegmentKey, amount: ColumnElement[Any]) -> ColumnElement[Any]:
    """Build an account's segment value. A tier comes from the revenue `amount`."""
    if key.dimension == "tier":
        highest_first = sorted(key.tiers, key=lambda tier: tier.min_revenue, reverse=True)
        return case(
            *(
                (amount >= literal(tier.min_revenue, Numeric), literal(tier.label, Text))
                for tier in highest_first[:-1]
            ),
            (amount > 0, literal(highest_first[-1].label, Text)),
            else_=null(),
        )
    if key.dimension == "attribute":
        return _blank_as_null(Account.attributes[key.attribute].astext)
    fields = {"region": Account.region, "industry": Account.industry, "owner": Account.owner}
    return _blank_as_null(fields[key.dimension])


def _account_segments(
    key: SegmentKey, tenant_id: uuid.UUID, revenue_at_end: CTE, account_map: CTE
) -> CTE:
    """Select every report account of the tenant with its segment value, null when it has
    none.

    Accounts that report as another one (merged away, or children at `level=parent`)
    are left out, so their values make no segment. A tier comes from the revenue in force
    at the report's revenue instant, so an account without revenue above 0 there has no
    tier. Other values are the account's field or attribute as text, with blank text as
    no value.
    """
    source: Any = Account.__table__
    if key.dimension == "tier":
        source = source.outerjoin(revenue_at_end, revenue_at_end.c.account_id == Account.id)
    segment = _segment_value(key, revenue_at_end.c.amount)
    mapped = select(account_map.c.account_id).where(account_map.c.account_id == Account.id)
    return (
        select(Account.id.label("account_id"), segment.label("segment"))
        .select_from(source)
        .where(Account.tenant_id == tenant_id, ~mapped.exists())
        .cte("account_segments")
        .prefix_with("NOT MATERIALIZED")
    )


def _respondent_parts(scored: CTE, key: str) -> list[Subquery]:
    """Select the respondent and response counts of each group of `scored` by the column
    `key`: each respondent once with its latest scored response in the group."""
    own_respondent = _own_respondent(scored)
    latest_by_respondent = (
        select(scored.c[key], scored.c.score)
        .ext(distinct_on(scored.c[key], scored.c.respondent, own_respondent))
        .order_by(scored.c[key], scored.c.respondent, own_respondent, *_newest_first(scored))
        .cte("latest_by_respondent")
    )
    respondent_totals = (
        select(
            latest_by_respondent.c[key],
            func.count().filter(latest_by_respondent.c.score >= 9).label("promoters"),
            func.count().filter(latest_by_respondent.c.score <= 6).label("detractors"),
            func.count().label("respondents"),
        )
        .group_by(latest_by_respondent.c[key])
        .subquery("respondent_totals")
    )
    response_totals = (
        select(
            scored.c[key],
            func.count().label("scored_responses"),
            func.count().filter(scored.c.account_id.is_(None)).label("unmatched_responses"),
        )
        .group_by(scored.c[key])
        .subquery("response_totals")
    )
    return [respondent_totals, response_totals]


def _grouped_coverage(
    groups: CTE, key: str, ranked: CTE, response_parts: Sequence[Subquery]
) -> Select[Any]:
    """Aggregate coverage figures for each row of `groups`, matched on the column `key`.

    `ranked` contains the revenue bins of the base accounts by `key` (see `_ranked`), and
    `response_parts` the respondent and response counts by `key` (see
    `_respondent_parts`). A group without rows gets zero totals. Keys match so that a
    null key is a group of its own.
    """
    account_totals = (
        select(ranked.c[key], *_account_aggregates(ranked))
        .group_by(ranked.c[key])
        .subquery("account_totals")
    )
    group = groups.c[key]
    parts = (account_totals, *response_parts)
    figures = [
        func.coalesce(figure, 0).label(figure.name)
        for part in parts
        for figure in part.c
        if figure.name != key
    ]
    source: Any = groups
    for part in parts:
        source = source.outerjoin(part, _same_group(part.c[key], group))
    return select(group, *figures).select_from(source)


def _same_group(left: ColumnElement[Any], right: ColumnElement[Any]) -> ColumnElement[bool]:
    """Match two group keys, a null key matching only a null key.

    Written as two equalities rather than IS NOT DISTINCT FROM, because PostgreSQL can hash
    equalities: with thousands of segment values the other form runs a nested loop.
    """
    return and_(
        func.coalesce(cast(left, Text), "") == func.coalesce(cast(right, Text), ""),
        left.is_(None) == right.is_(None),
    )


def _state_segment_accounts(
    key: SegmentKey,
    window: ReportWindow,
    rule: RollupRule,
    revenue_at_end: FromClause,
    account_map: CTE,
) -> CTE:
    """Select every report account with its segment (as `_account_segments`), revenue,
    bucket and quarter-state figures, reading `accounts` once for the whole statement.

    `amount` is null without a revenue record in force, and the bucket and figures are
    null without a scored response in the quarter.
    """
    state = AccountQuarterScore
    bucket, _ = _state_bucket_and_value(rule)
    # The bucket's CASE has an ELSE, so an account without a state row needs its own null.
    bucket = case((state.account_id.is_(None), null()), else_=bucket)
    mapped = select(account_map.c.account_id).where(account_map.c.account_id == Account.id)
    return (
        select(
            Account.id.label("account_id"),
            _segment_value(key, revenue_at_end.c.amount).label("segment"),
            revenue_at_end.c.amount,
            bucket.label("bucket"),
            state.promoters,
            state.detractors,
            state.respondents,
            state.scored_responses,
        )
        .select_from(Account)
        .outerjoin(revenue_at_end, revenue_at_end.c.account_id == Account.id)
        .outerjoin(
            state,
            and_(
                state.tenant_id == window.tenant_id,
                state.quarter_start == window.start,
                state.account_id == Account.id,
            ),
        )
        .where(Account.tenant_id == window.tenant_id, ~mapped.exists())
        .cte("segment_account_buckets")
    )


def _state_segment_respondents(window: ReportWindow, account_segments: CTE) -> Subquery:
    """Select each segment's respondent and response counts from the quarter state.

    The counts are those `_respondent_parts` computes from the scored responses of the
    segment's accounts. Summing `account_quarter_scores` over a segment counts a
    respondent once per account. So for each respondent of several accounts in the
    quarter (`respondent_quarter_scores.accounts` above 1), read from its responses, the
    sums drop its newest response per account and add its newest response per segment.
    Responses of no account belong to no segment, so `unmatched_responses` is 0.
    `account_segments` comes from `_state_segment_accounts`.
    NOTE: when most respondents have several accounts, this reads about as many
    responses as the statement over responses does.
    """
    from_state = select(
        account_segments.c.segment,
        account_segments.c.promoters,
        account_segments.c.detractors,
        account_segments.c.respondents,
        account_segments.c.scored_responses,
    ).where(account_segments.c.respondents.is_not(None))

    several = RespondentQuarterScore
    origin = func.coalesce(SurveyResponse.merged_from_account_id, SurveyResponse.account_id)
    several_scored = (
        select(
            account_segments.c.segment,
            origin.label("account_id"),
            SurveyResponse.email_key.label("respondent"),
            SurveyResponse.score,
            SurveyResponse.submitted_at,
            SurveyResponse.response_id,
            SurveyResponse.source,
        )
        .select_from(several)
        .join(
            SurveyResponse,
            and_(
                SurveyResponse.tenant_id == window.tenant_id,
                # Only a respondent with an email can have several accounts, because a
                # response without an email is a respondent of its own.
                SurveyResponse.email_key == func.substr(several.respondent, len("email:") + 1),
                SurveyResponse.score.is_not(None),
                SurveyResponse.submitted_at >= window.start,
                SurveyResponse.submitted_at < window.end,
            ),
        )
        .join(account_segments, account_segments.c.account_id == origin)
        .where(
            several.tenant_id == window.tenant_id,
            several.quarter_start == window.start,
            several.accounts > 1,
            several.respondent.startswith("email:"),
        )
        .cte("several_scored")
    )
    newest_first = [
        several_scored.c.submitted_at.desc(),
        several_scored.c.response_id.desc(),
        several_scored.c.source.desc(),
    ]

    def newest_by(*keys: ColumnElement[Any]) -> Subquery:
        return (
            select(several_scored.c.segment, several_scored.c.score)
            .ext(distinct_on(*keys, several_scored.c.respondent))
            .order_by(*keys, several_scored.c.respondent, *newest_first)
            .subquery()
        )

    def respondent_counts(newest: Subquery, sign: int) -> Select[Any]:
        return select(
            newest.c.segment,
            sign * func.count().filter(newest.c.score >= 9),
            sign * func.count().filter(newest.c.score <= 6),
            sign * func.count(),
            literal(0),
        ).group_by(newest.c.segment)

    parts = union_all(
        from_state,
        respondent_counts(newest_by(several_scored.c.account_id), -1),
        respondent_counts(newest_by(several_scored.c.segment), 1),
    ).subquery("segment_state")

    def total(figure: ColumnElement[Any]) -> ColumnElement[Any]:
        return cast(func.sum(figure), BigInteger)

    return (
        select(
            parts.c.segment,
            total(parts.c.promoters).label("promoters"),
            total(parts.c.detractors).label("detractors"),
            total(parts.c.respondents).label("respondents"),
            total(parts.c.scored_responses).label("scored_responses"),
            cast(literal(0), BigInteger).label("unmatched_responses"),
        )
        .group_by(parts.c.segment)
        .subquery("respondent_totals")
    )


def _state_segment_parts(
    key: SegmentKey, window: ReportWindow, rule: RollupRule, account_map: CTE
) -> tuple[CTE, CTE, list[Subquery]]:
    """Build the segments, base accounts and respondent counts from the quarter state."""
    # Read once, so a subquery: its rows stream into the join with the accounts instead of
    # being written out as a CTE's would (see `revenue_at_end_select`). At 1,000,000
    # accounts on PostgreSQL 15 the report took 3.4 s this way and 3.8 s with a CTE.
    revenue_at_end = revenue_at_end_select(window, account_map, convert_all=False).subquery(
        "revenue_at_end"
    )
    account_segments = _state_segment_accounts(key, window, rule, revenue_at_end, account_map)
    classified = (
        select(
            account_segments.c.segment,
            account_segments.c.account_id,
            account_segments.c.amount,
            func.coalesce(account_segments.c.bucket, literal("unaccounted")).label("bucket"),
        )
        .where(account_segments.c.amount > 0)
        .cte("classified")
    )
    return account_segments, classified, [_state_segment_respondents(window, account_segments)]


def _response_segment_parts(
    key: SegmentKey, window: ReportWindow, rule: RollupRule, account_map: CTE
) -> tuple[CTE, CTE, list[Subquery]]:
    """Build the segments, base accounts and respondent counts from the responses."""
    revenue_at_end = revenue_at_end_cte(window, account_map, convert_all=False)
    scored = scored_cte(window, account_map)
    account_buckets = account_buckets_cte(counted_cte(scored, rule.rollup), rule)
    account_segments = _account_segments(key, window.tenant_id, revenue_at_end, account_map)
    classified = (
        select(
            account_segments.c.segment,
            revenue_at_end.c.account_id,
            revenue_at_end.c.amount,
            func.coalesce(account_buckets.c.bucket, literal("unaccounted")).label("bucket"),
        )
        .select_from(
            revenue_at_end.join(
                account_segments, account_segments.c.account_id == revenue_at_end.c.account_id
            ).outerjoin(
                account_buckets, account_buckets.c.account_id == revenue_at_end.c.account_id
            )
        )
        .where(revenue_at_end.c.amount > 0)
        .cte("classified")
    )
    segment_scored = (
        select(account_segments.c.segment, *scored.c)
        .select_from(
            scored.join(account_segments, account_segments.c.account_id == scored.c.account_id)
        )
        .cte("segment_scored")
    )
    return account_segments, classified, _respondent_parts(segment_scored, "segment")


def segments_statement(
    window: ReportWindow, rule: RollupRule, key: SegmentKey, *, from_state: bool = False
) -> Select[tuple[object, ...]]:
    """Build one statement for the coverage of every segment in the period.

    Each segment is figured like `coverage_statement` over its own accounts and their
    responses: the same revenue base, buckets and respondent rule. A respondent counts
    once per segment with the latest of its responses to that segment's accounts.
    Unmatched responses belong to no segment. Rows come by total revenue descending,
    ties by segment value, with accounts without a value (a null segment) last. With
    `from_state`, buckets and respondent counts come from the quarter state (see
    `quarter_state_applies`).
    """
    account_map = account_map_cte(window)
    parts = _state_segment_parts if from_state else _response_segment_parts
    account_segments, classified, response_parts = parts(key, window, rule, account_map)
    # Every value any account holds, every configured tier, and null for no value.
    groups = union(
        select(account_segments.c.segment),
        select(null().label("segment")),
        *(select(literal(tier.label, Text).label("segment")) for tier in key.tiers),
    ).cte("segments")

    ranked = _ranked(classified, ("segment",))
    statement = _grouped_coverage(groups, "segment", ranked, response_parts)
    order: list[ColumnElement[Any]] = [
        statement.selected_columns["total_revenue"].desc(),
        groups.c.segment.is_(None),
    ]
    if key.tiers:
        # Tiers of equal revenue (empty ones, most often) come in band order, not by label.
        order.append(
            case(
                *((groups.c.segment == tier.label, index) for index, tier in enumerate(key.tiers)),
                else_=len(key.tiers),
            )
        )
    return statement.order_by(*order, groups.c.segment)


async def segment_totals(
    session: AsyncSession, window: ReportWindow, rule: RollupRule, key: SegmentKey
) -> list[SegmentTotals]:
    from_state = await quarter_state_applies(session, window.tenant_id, [window])
    statement = segments_statement(window, rule, key, from_state=from_state)
    with missing_rate_as_error():
        rows = (await session.execute(statement)).mappings().all()
    return [SegmentTotals(segment=row["segment"], totals=_totals_from_row(row)) for row in rows]


def _window_rows(windows: Sequence[ReportWindow]) -> CTE:
    """List the periods as rows (period_index, period_start, period_end, as_of)."""
    rows = values(
        column("period_index", Integer),
        column("period_start", DateTime(timezone=True)),
        column("period_end", DateTime(timezone=True)),
        column("as_of", DateTime(timezone=True)),
        name="window_rows",
    ).data([(index, w.start, w.end, w.as_of) for index, w in enumerate(windows)])
    return select(rows).cte("windows")


def _read_bound(window: ReportWindow) -> datetime:
    """Return the instant before which a record is read at the window's revenue instant.

    A record is read when its `effective_at` is before `end` and not after `as_of`, that
    is before the earlier of `end` and `as_of` plus one microsecond, the resolution of
    both Python's and PostgreSQL's timestamps.
    """
    return min(window.end, window.as_of + timedelta(microseconds=1))


def _records_in_windows(tenant_id: uuid.UUID, windows: Sequence[ReportWindow]) -> Subquery:
    """Select every revenue record read at one of the periods, with the periods it is in
    force at: (account_id, amount, currency, bounds_before, last_position).

    Positions number the periods from 1 in the order of their read bounds
    (`_read_bound`, see `_positions`). Each record is read once, with the `effective_at`
    of the account's next record, and is in force at a period when it is read there and
    its next record is not. `width_bucket` counts the sorted bounds at or before an
    instant, so a record is in force at the positions after `bounds_before`, up to
    `last_position`, and at none when `last_position` is not above `bounds_before`.
    """
    bounds = [_read_bound(windows[index]) for index in _positions(windows)]
    bound_array = literal(bounds, _TIMESTAMP_ARRAY)
    next_effective_at = func.lead(RevenueRecord.effective_at).over(
        partition_by=RevenueRecord.account_id, order_by=RevenueRecord.effective_at
    )
    # An account is merged away at a period when its `merged_at` is read there, the rule
    # of `_merge_in_force`, so the merge ends its records' positions like a next record.
    merged = aliased(Account, name="merged_account")
    return (
        select(
            RevenueRecord.account_id,
            RevenueRecord.amount,
            RevenueRecord.currency,
            func.width_bucket(RevenueRecord.effective_at, bound_array).label("bounds_before"),
            func.least(
                func.coalesce(func.width_bucket(next_effective_at, bound_array), len(bounds)),
                func.coalesce(func.width_bucket(merged.merged_at, bound_array), len(bounds)),
            ).label("last_position"),
        )
        .outerjoin(
            merged,
            and_(
                merged.tenant_id == tenant_id,
                merged.id == RevenueRecord.account_id,
                merged.merged_into_id.is_not(None),
            ),
        )
        # A record read at no period is never in force, and as a next record it counts the
        # same as none.
        .where(RevenueRecord.tenant_id == tenant_id, RevenueRecord.effective_at < bounds[-1])
        .subquery("records")
    )


def _positions(windows: Sequence[ReportWindow]) -> list[int]:
    """List the indexes of `windows` in the order of their read bounds: the period at
    position p (from 1) is `windows[_positions(windows)[p - 1]]`."""
    return sorted(range(len(windows)), key=lambda index: _read_bound(windows[index]))


def _at_position(
    windows: Sequence[ReportWindow],
    value: Callable[[int, ReportWindow], Any],
    item_type: Any,
    position: ColumnElement[int],
) -> ColumnElement[Any]:
    """Build the value of the period at `position`, from an array of each period's value."""
    values = [value(index, windows[index]) for index in _positions(windows)]
    # Without the brackets PostgreSQL parses `[position]` as part of the cast's type.
    return Grouping(literal(values, ARRAY(item_type)))[position]


def _revenue_in_windows(
    tenant_id: uuid.UUID, windows: Sequence[ReportWindow], account_map: CTE
) -> Subquery:
    """Select, for each period, each report account's revenue in force at its revenue
    instant, in the reporting currency, as `revenue_at_end_cte` does for one period.

    Rows are (period_index, period_start, account_id, amount). `generate_series` lists the
    positions of each record (see `_records_in_windows`), so no record is compared with
    every period.

    The result is a subquery rather than a CTE. PostgreSQL (12 and later, "WITH Queries"
    in its manual) inlines only CTEs without volatile functions, and the conversion calls
    the volatile `revcov_missing_fx_rate`. Writing 8 rows per account to a tuplestore
    added up to 430 ms at 100,000 accounts to the 0.5 to 0.9 s of reading them (three
    psql runs on a shared 2-core machine).
    """
    records = _records_in_windows(tenant_id, windows)
    in_force = select(
        records.c.account_id,
        records.c.amount,
        records.c.currency,
        func.generate_series(records.c.bounds_before + 1, records.c.last_position).label(
            "position"
        ),
    ).subquery("in_force")

    def at_position(value: Callable[[int, ReportWindow], Any], item_type: Any) -> Any:
        return _at_position(windows, value, item_type, in_force.c.position)

    timestamp = DateTime(timezone=True)
    latest = select(
        at_position(lambda index, _: index, Integer).label("period_index"),
        at_position(lambda _, window: window.start, timestamp).label("period_start"),
        at_position(lambda _, window: window.end, timestamp).label("period_end"),
        at_position(lambda _, window: window.as_of, timestamp).label("as_of"),
        in_force.c.account_id,
        in_force.c.amount,
        in_force.c.currency,
    ).subquery("latest_revenue")
    reporting_currency = windows[0].reporting_currency
    amount = converted_amount(
        latest, tenant_id, reporting_currency, latest.c.period_end, latest.c.as_of
    )
    converted = select(
        latest.c.period_index, latest.c.period_start, latest.c.account_id, amount.label("amount")
    ).subquery("converted")
    if windows[0].level is Level.ACCOUNT:
        # The trend reads every row (its base is an outer join), so every amount is converted.
        return select(*converted.c).subquery("revenue_at_end")

    family = _report_account(account_map, converted.c.account_id)
    return (
        select(
            converted.c.period_index,
            converted.c.period_start,
            family.label("account_id"),
            func.sum(converted.c.amount).label("amount"),
        )
        .select_from(
            converted.outerjoin(
                account_map,
                and_(
                    account_map.c.period_index == converted.c.period_index,
                    account_map.c.account_id == converted.c.account_id,
                ),
            )
        )
        .group_by(converted.c.period_index, converted.c.period_start, family)
        .subquery("revenue_at_end")
    )


def _scored_in_windows(tenant_id: uuid.UUID, windows: CTE, account_map: CTE) -> CTE:
    """Select, for each period, the scored responses submitted in it, as `scored_cte` does."""
    respondent = _respondent_key()
    origin = func.coalesce(SurveyResponse.merged_from_account_id, SurveyResponse.account_id)
    return (
        select(
            windows.c.period_index,
            SurveyResponse.id,
            _report_account(account_map, origin).label("account_id"),
            SurveyResponse.score,
            SurveyResponse.submitted_at,
            SurveyResponse.response_id,
            SurveyResponse.source,
            respondent.label("respondent"),
            _role_rank().label("role_rank"),
        )
        .select_from(windows)
        .join(
            SurveyResponse,
            and_(
                SurveyResponse.tenant_id == tenant_id,
                SurveyResponse.score.is_not(None),
                SurveyResponse.submitted_at >= windows.c.period_start,
                SurveyResponse.submitted_at < windows.c.period_end,
            ),
        )
        .outerjoin(
            Contact,
            and_(
                Contact.tenant_id == SurveyResponse.tenant_id,
                Contact.account_id == SurveyResponse.account_id,
                Contact.email == respondent,
            ),
        )
        .outerjoin(
            account_map,
            and_(
                account_map.c.period_index == windows.c.period_index,
                account_map.c.account_id == origin,
            ),
        )
        .cte("scored")
    )


# The quarter state path packs an account's bucket at every position into one bigint, 2 bits
# a position (0 for no bucket), so it serves trends of at most this many periods.
MAX_STATE_TREND_PERIODS = 31
_BUCKET_CODES = {"at_risk": 1, "passive": 2, "safe": 3}


def _state_trend_ranked(
    tenant_id: uuid.UUID, windows: Sequence[ReportWindow], rule: RollupRule
) -> CTE:
    """Sum each period's base accounts into revenue bins by bucket, from the revenue
    records and the quarter state: the rows of `_ranked` by `period_index`.

    A row per account and period would be about 8 rows per account for 8 quarters, each
    joined with its state row. Instead:

    - A record in the reporting currency (or of 0) is one span of the positions it is in
      force at (see `_records_in_windows`), because its amount and bin are the same at
      each. A record in another currency is one span per position, because its converted
      amount follows the rate. Without any rate into the reporting currency, such a
      record is converted at its first position only, which fails as it must.
    - The state rows of each account become one code, its bucket at each position (0 for
      none), which its spans carry.
    - Spans alike in positions, buckets within them and bin form one group, and the
      groups, spread over their positions, give each position's bins by bucket.
    - Only accounts in a bin where half of a bucket's revenue is crossed get a row per
      period, with their bucket, for the exact ranking within the bin.

    The caller checks that the state serves every period (`quarter_state_applies`), that
    no two periods start at the same instant and that there are at most
    `MAX_STATE_TREND_PERIODS` periods.
    """
    records = _records_in_windows(tenant_id, windows)
    reporting_currency = windows[0].reporting_currency
    timestamp = DateTime(timezone=True)

    def at_position(
        value: Callable[[int, ReportWindow], Any], item_type: Any, position: ColumnElement[int]
    ) -> Any:
        return _at_position(windows, value, item_type, position)

    def converted_at(source: FromClause, position: ColumnElement[int]) -> ColumnElement[Any]:
        return converted_amount(
            source,
            tenant_id,
            reporting_currency,
            at_position(lambda _, window: window.end, timestamp, position),
            at_position(lambda _, window: window.as_of, timestamp, position),
        )

    # Evaluated once per statement (an InitPlan), so the per-position branch below runs
    # only for tenants with rates into the reporting currency.
    has_rates = (
        select(FxRate.tenant_id)
        .where(FxRate.tenant_id == tenant_id, FxRate.quote_currency == reporting_currency)
        .exists()
    )
    state = AccountQuarterScore
    bucket, _ = _state_bucket_and_value(rule)
    bucket_code = case(
        *((bucket == name, literal(code, BigInteger)) for name, code in _BUCKET_CODES.items())
    )
    # The codes come out in account order, the order in which the records are read, so
    # the two meet in a merge join: with no hash table of every account, whether of the
    # codes or of the join. An index scan of the state's primary key yields a period's
    # rows in that order, and the scans of all periods merge into it. At 1,000,000
    # accounts on PostgreSQL 15, the codes took 1.8 s this way and 2.3 s in a hash
    # aggregate. The trend of 8 quarters took 9.2 s, against 11.3 s with a hash join and
    # a spread of each covered span.
    state_rows = (
        union_all(
            *(
                select(
                    state.account_id,
                    bucket_code.bitwise_lshift(literal(2 * position, Integer)).label("code"),
                ).where(state.tenant_id == tenant_id, state.quarter_start == windows[index].start)
                for position, index in enumerate(_positions(windows))
            )
        )
        .order_by("account_id")
        .subquery("state_rows")
    )
    codes = (
        select(state_rows.c.account_id, func.bit_or(state_rows.c.code).label("code"))
        .group_by(state_rows.c.account_id)
        .subquery("bucket_codes")
    )
    coded = (
        select(records, func.coalesce(codes.c.code, literal(0, BigInteger)).label("code"))
        .select_from(records.outerjoin(codes, codes.c.account_id == records.c.account_id))
        .subquery("coded_records")
    )

    steady = or_(coded.c.amount == 0, coded.c.currency == reporting_currency)
    in_force = coded.c.bounds_before < coded.c.last_position
    first_position = coded.c.bounds_before + 1
    steady_spans = select(
        coded.c.account_id,
        converted_at(coded, first_position).label("amount"),
        coded.c.code,
        first_position.label("first_position"),
        coded.c.last_position,
    ).where(in_force, or_(steady, ~has_rates))
    foreign = (
        select(
            coded.c.account_id,
            coded.c.amount,
            coded.c.currency,
            coded.c.code,
            func.generate_series(first_position, coded.c.last_position).label("position"),
        )
        .where(in_force, ~steady, has_rates)
        .subquery("foreign_in_force")
    )
    foreign_spans = select(
        foreign.c.account_id,
        converted_at(foreign, foreign.c.position).label("amount"),
        foreign.c.code,
        foreign.c.position.label("first_position"),
        foreign.c.position.label("last_position"),
    )
    every_span = union_all(steady_spans, foreign_spans).subquery("every_span")
    # The code's bits of the span's own positions, so that spans alike in all but the
    # buckets outside them fall into one group.
    lowest_bit = literal(1, BigInteger)
    below_last = lowest_bit.bitwise_lshift(2 * every_span.c.last_position) - 1
    below_first = lowest_bit.bitwise_lshift(2 * (every_span.c.first_position - 1)) - 1
    span_code = every_span.c.code.bitwise_and(below_last.bitwise_and(below_first.bitwise_not()))
    # Written out once, because the span groups and the crossing bins' accounts read it.
    spans = (
        select(
            every_span.c.account_id,
            every_span.c.amount,
            every_span.c.first_position,
            every_span.c.last_position,
            _revenue_bin(every_span.c.amount).label("bin"),
            span_code.label("code"),
        )
        .where(every_span.c.amount > 0)
        .cte("spans")
    )
    # Spans alike in positions, buckets and bin: a few hundred thousand groups for the
    # 2.5 million records of the benchmark's large tenant. Spread over their positions,
    # they give both the covered bins and the bins of all base accounts.
    span_groups = (
        select(
            spans.c.first_position,
            spans.c.last_position,
            spans.c.code,
            spans.c.bin,
            func.count().label("accounts"),
            func.sum(spans.c.amount).label("revenue"),
        )
        .group_by(spans.c.first_position, spans.c.last_position, spans.c.code, spans.c.bin)
        .subquery("span_groups")
    )
    spread = select(
        span_groups,
        func.generate_series(span_groups.c.first_position, span_groups.c.last_position).label(
            "position"
        ),
    ).subquery("spread_groups")
    code_at = spread.c.code.bitwise_rshift(2 * (spread.c.position - 1)).bitwise_and(3)
    position_bins = (
        select(
            spread.c.position,
            code_at.label("bucket_code"),
            spread.c.bin,
            func.sum(spread.c.accounts).label("accounts"),
            func.sum(spread.c.revenue).label("revenue"),
        )
        .group_by(spread.c.position, code_at, spread.c.bin)
        .subquery("position_bins")
    )
    # Bucket code 0 marks the bin's unaccounted accounts at that position.
    bucket_name = case(
        *(
            (position_bins.c.bucket_code == code, literal(name))
            for name, code in _BUCKET_CODES.items()
        ),
        else_=literal("unaccounted"),
    )
    bins = select(
        at_position(lambda index, _: index, Integer, position_bins.c.position).label(
            "period_index"
        ),
        bucket_name.label("bucket"),
        position_bins.c.bin,
        position_bins.c.accounts,
        position_bins.c.revenue,
    ).subquery("bins")

    def crossing_members(crossing: CTE) -> Subquery:
        # Spans in a crossing bin at some period, one row per position, kept where the
        # bin crosses half at that position's period, with the account's bucket there.
        candidates = (
            select(
                spans.c.account_id,
                spans.c.amount,
                spans.c.bin,
                func.generate_series(spans.c.first_position, spans.c.last_position).label(
                    "position"
                ),
            )
            .where(spans.c.bin.in_(select(crossing.c.bin)))
            .subquery("crossing_candidates")
        )
        period_index = at_position(lambda index, _: index, Integer, candidates.c.position)
        # A scalar subquery, so each of the few candidates looks its state row up by key.
        state_bucket = (
            select(bucket)
            .where(
                state.tenant_id == tenant_id,
                state.quarter_start
                == at_position(lambda _, window: window.start, timestamp, candidates.c.position),
                state.account_id == candidates.c.account_id,
            )
            .scalar_subquery()
        )
        return (
            select(
                period_index.label("period_index"),
                func.coalesce(state_bucket, literal("unaccounted")).label("bucket"),
                candidates.c.bin,
                candidates.c.amount,
                candidates.c.account_id,
            )
            .where(
                tuple_(period_index, candidates.c.bin).in_(
                    select(crossing.c.period_index, crossing.c.bin)
                )
            )
            .subquery("crossing_members")
        )

    return _rank_bins(bins, crossing_members, ("period_index",))


def trend_statement(
    tenant_id: uuid.UUID,
    windows: Sequence[ReportWindow],
    rule: RollupRule,
    *,
    from_state: bool = False,
) -> Select[tuple[object, ...]]:
    """Build one statement for the coverage of each period in `windows`, in their order.

    Each period is figured exactly as `coverage_statement` figures it alone: responses
    submitted in its `[start, end)`, revenue in force at its own revenue instant. Rows
    carry `period_index`, the period's place in `windows`. With `from_state`, buckets and
    respondent counts come from the quarter state (see `quarter_state_applies`).
    """
    # TODO: from the quarter state, the trend of 8 quarters takes 6 to 12 times the revenue
    # sum at 1,000,000 accounts, against a target of 5. It was 6x for the statement alone
    # on PostgreSQL 15 and 12x in the benchmark on PostgreSQL 18. The record pass, the
    # per-account codes and grouping the spans cost about as much as the sum each.
    window_rows = _window_rows(windows)
    distinct_starts = len({window.start for window in windows}) == len(windows)
    if from_state and distinct_starts and len(windows) <= MAX_STATE_TREND_PERIODS:
        ranked = _state_trend_ranked(tenant_id, windows, rule)
        starts = [window.start for window in windows]
        response_parts = [_state_respondent_totals(tenant_id, window_rows, None, starts)]
        statement = _grouped_coverage(window_rows, "period_index", ranked, response_parts)
        return statement.order_by(window_rows.c.period_index)

    level = windows[0].level
    keys = ("period_index",)
    account_map = _account_map(tenant_id, level, window_rows, keys)
    revenue_at_end = _revenue_in_windows(tenant_id, windows, account_map)
    scored = _scored_in_windows(tenant_id, window_rows, account_map)
    account_buckets = account_buckets_cte(counted_cte(scored, rule.rollup, keys), rule, keys)
    classified = (
        select(
            revenue_at_end.c.period_index,
            revenue_at_end.c.account_id,
            revenue_at_end.c.amount,
            func.coalesce(account_buckets.c.bucket, literal("unaccounted")).label("bucket"),
        )
        .select_from(
            revenue_at_end.outerjoin(
                account_buckets,
                and_(
                    account_buckets.c.period_index == revenue_at_end.c.period_index,
                    account_buckets.c.account_id == revenue_at_end.c.account_id,
                ),
            )
        )
        .where(revenue_at_end.c.amount > 0)
        # A subquery, for the reason `_revenue_in_windows` gives.
        .subquery("classified")
    )
    ranked = _ranked(classified, keys)
    statement = _grouped_coverage(
        window_rows, "period_index", ranked, _respondent_parts(scored, "period_index")
    )
    return statement.order_by(window_rows.c.period_index)


async def trend_totals(
    session: AsyncSession, tenant_id: uuid.UUID, windows: Sequence[ReportWindow], rule: RollupRule
) -> list[CoverageTotals]:
    """Return each period's aggregates in the order of `windows`."""
    from_state = await quarter_state_applies(session, tenant_id, windows)
    statement = trend_statement(tenant_id, windows, rule, from_state=from_state)
    with missing_rate_as_error():
        rows = (await session.execute(statement)).mappings().all()
    return [_totals_from_row(row) for row in rows]
