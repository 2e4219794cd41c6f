"""Report statements: each report is one SQL statement built from shared CTEs.

Every roll-up rule works in two steps. First it picks the responses it counts for each
account (`_counted`), then it turns their scores into a bucket with aggregates
(`_account_buckets`). Scores are whole numbers from 0 to 10, so each rule compares sums
and counts as integers and never rounds before comparing.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CTE, ColumnElement, Numeric, Select, and_, case, cast, func, literal, select
from sqlalchemy import true as sql_true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import RevenueRecord
from app.contacts.models import Contact, ContactRole
from app.reports.schemas import Rollup
from app.responses.models import SurveyResponse

BUCKETS = ("at_risk", "passive", "safe", "unaccounted")

# Seniority of a respondent's contact role at the account, for the `decision_maker` rule.
# A respondent without a contact role at the account ranks below every role.
ROLE_RANKS = {ContactRole.DECISION_MAKER: 3, ContactRole.INFLUENCER: 2, ContactRole.USER: 1}


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
    the last instant before `end`, or at `as_of` when that is earlier.
    """

    tenant_id: uuid.UUID
    start: datetime
    end: datetime
    as_of: datetime


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
    """One account's state in a period: `revenue` is None when the account has no record
    in force, `bucket` is None when no scored response counts, and `value` is the rule's
    figure (the deciding score, the mean or the account NPS)."""

    revenue: Decimal | None
    bucket: str | None
    value: Decimal | None
    responses: list[ClassifiedResponse]


def _revenue_at_end(window: ReportWindow, account_id: int | None = None) -> CTE:
    """Select each account's revenue record in force at the report's revenue instant."""
    statement = (
        select(RevenueRecord.account_id, RevenueRecord.amount)
        .where(
            RevenueRecord.tenant_id == window.tenant_id,
            RevenueRecord.effective_at < window.end,
            RevenueRecord.effective_at <= window.as_of,
        )
        .ext(distinct_on(RevenueRecord.account_id))
        .order_by(RevenueRecord.account_id, RevenueRecord.effective_at.desc())
    )
    if account_id is not None:
        statement = statement.where(RevenueRecord.account_id == account_id)
    return statement.cte("revenue_at_end")


def _scored(window: ReportWindow, account_id: int | None = None) -> CTE:
    """Select the scored responses submitted in the period, with respondent key and role rank."""
    respondent = func.nullif(func.lower(func.btrim(SurveyResponse.email)), "")
    role_rank = case(
        *((Contact.role == role.value, rank) for role, rank in ROLE_RANKS.items()),
        else_=0,
    )
    statement = (
        select(
            SurveyResponse.id,
            SurveyResponse.account_id,
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
        .where(
            SurveyResponse.tenant_id == window.tenant_id,
            SurveyResponse.score.is_not(None),
            SurveyResponse.submitted_at >= window.start,
            SurveyResponse.submitted_at < window.end,
        )
    )
    if account_id is not None:
        statement = statement.where(SurveyResponse.account_id == account_id)
    # The contact join adds no rows: a contact link's key is (tenant, email, account), and
    # the join fixes all three.
    return statement.cte("scored")


def _own_respondent(scored: CTE) -> ColumnElement[Any]:
    # A response without an email is its own respondent, so its row id is its respondent key.
    return case((scored.c.respondent.is_(None), scored.c.id))


def _newest_first(scored: CTE) -> list[ColumnElement[Any]]:
    """Order responses from the newest; ties go to the greater response id, then source."""
    return [scored.c.submitted_at.desc(), scored.c.response_id.desc(), scored.c.source.desc()]


def _counted(scored: CTE, rollup: Rollup) -> CTE:
    """Select the matched responses that the rule counts, one or more per account.

    - `latest`: the account's latest response.
    - `decision_maker`: the latest response of the most senior role that answered.
    - `average`, `lowest`, `account_nps`: each respondent's latest response.
    """
    statement = select(scored.c.id, scored.c.account_id, scored.c.score).where(
        scored.c.account_id.is_not(None)
    )
    if rollup is Rollup.LATEST:
        statement = statement.ext(distinct_on(scored.c.account_id)).order_by(
            scored.c.account_id, *_newest_first(scored)
        )
    elif rollup is Rollup.DECISION_MAKER:
        statement = statement.ext(distinct_on(scored.c.account_id)).order_by(
            scored.c.account_id, scored.c.role_rank.desc(), *_newest_first(scored)
        )
    else:
        own_respondent = _own_respondent(scored)
        statement = statement.ext(
            distinct_on(scored.c.account_id, scored.c.respondent, own_respondent)
        ).order_by(scored.c.account_id, scored.c.respondent, own_respondent, *_newest_first(scored))
    return statement.cte("counted")


def _account_buckets(counted: CTE, rule: RollupRule) -> CTE:
    """Aggregate the counted responses into each covered account's bucket and the rule's figure.

    - `latest`, `lowest`, `decision_maker`: the lowest counted score (the only one, except
      under `lowest`): 0-6 `at_risk`, 7-8 `passive`, 9-10 `safe`.
    - `average`: the mean of the counted scores: at least 9 `safe`, at least 7 `passive`,
      else `at_risk`, compared as sum >= 9 x count, so without rounding.
    - `account_nps`: 100 x (promoters - detractors) / respondents: above the safe
      threshold `safe`, below the at-risk threshold `at_risk`, else `passive`, compared as
      100 x (promoters - detractors) against threshold x respondents.
    """
    responses = func.count()
    total = func.sum(counted.c.score)
    lowest = func.min(counted.c.score)
    net_promoters = 100 * (
        func.count().filter(counted.c.score >= 9) - func.count().filter(counted.c.score <= 6)
    )
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
    return (
        select(counted.c.account_id, bucket.label("bucket"), value.label("value"))
        .group_by(counted.c.account_id)
        .cte("account_buckets")
    )


def coverage_statement(window: ReportWindow, rule: RollupRule) -> Select[tuple[object, ...]]:
    """Build the coverage statement for the half-open period `[start, end)`.

    - Revenue base: each account's record with the latest `effective_at` before `end` and
      not after `as_of`, kept when its amount is above 0. Records arriving out of order
      do not matter.
    - Bucket: by the roll-up rule (see `_counted` and `_account_buckets`) over the
      account's scored responses submitted in the period; ties between responses at one
      instant go to the greater `response_id`, then the greater `source`. Base accounts
      without one are `unaccounted`. Null scores never count.
    - Respondents: each email (case-insensitive, blank as none) counts once with its latest
      scored response in the period, matched to an account or not; a response without an
      email is a respondent of its own. This part does not depend on the rule.
    """
    revenue_at_end = _revenue_at_end(window)
    scored = _scored(window)
    account_buckets = _account_buckets(_counted(scored, rule.rollup), rule)
    classified = (
        select(
            revenue_at_end.c.amount,
            func.coalesce(account_buckets.c.bucket, literal("unaccounted")).label("bucket"),
        )
        .select_from(
            revenue_at_end.outerjoin(
                account_buckets, account_buckets.c.account_id == revenue_at_end.c.account_id
            )
        )
        .where(revenue_at_end.c.amount > 0)
        .cte("classified")
    )
    own_respondent = _own_respondent(scored)
    latest_by_respondent = (
        select(scored.c.score)
        .ext(distinct_on(scored.c.respondent, own_respondent))
        .order_by(scored.c.respondent, own_respondent, *_newest_first(scored))
        .cte("latest_by_respondent")
    )

    account_totals = select(
        func.coalesce(func.sum(classified.c.amount), 0).label("total_revenue"),
        func.count().label("total_accounts"),
        *(
            func.coalesce(
                func.sum(classified.c.amount).filter(classified.c.bucket == name), 0
            ).label(f"{name}_revenue")
            for name in BUCKETS
        ),
        *(
            func.count().filter(classified.c.bucket == name).label(f"{name}_accounts")
            for name in BUCKETS
        ),
    ).subquery("account_totals")
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


async def coverage_totals(
    session: AsyncSession, window: ReportWindow, rule: RollupRule
) -> CoverageTotals:
    row = (await session.execute(coverage_statement(window, rule))).mappings().one()
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
    )


def classification_statement(
    window: ReportWindow, rule: RollupRule, account_id: int
) -> Select[tuple[object, ...]]:
    """Build the statement for one account's classification in the period.

    It returns one row per response of the account submitted in the period, scored or
    not, in submission order; with no response it returns one row whose response columns
    are null. Every row repeats the account's revenue, bucket and the rule's figure, which
    come from the same CTEs as the coverage statement. `counted` marks the responses the
    rule used; a null score is never counted.
    """
    revenue_at_end = _revenue_at_end(window, account_id)
    scored = _scored(window, account_id)
    counted = _counted(scored, rule.rollup)
    account_buckets = _account_buckets(counted, rule)
    summary = select(
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
        .where(
            SurveyResponse.tenant_id == window.tenant_id,
            SurveyResponse.account_id == account_id,
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
    rows = (await session.execute(statement)).mappings().all()
    first = rows[0]
    return AccountClassification(
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
