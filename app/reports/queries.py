"""Report statements: each report is one SQL statement returning one row of aggregates."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, case, func, literal, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import RevenueRecord
from app.responses.models import SurveyResponse

BUCKETS = ("at_risk", "passive", "safe", "unaccounted")


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


def coverage_statement(
    tenant_id: uuid.UUID, start: datetime, end: datetime
) -> Select[tuple[object, ...]]:
    """Build the coverage statement for the half-open period `[start, end)`.

    - Revenue base: each account's record with the latest `effective_at` before `end`,
      kept when its amount is above 0. Records arriving out of order do not matter.
    - Bucket: the account's latest scored response with `submitted_at` in the period
      (ties go to the greater `response_id`, then the greater `source`): 0-6 `at_risk`,
      7-8 `passive`, 9-10 `safe`. Base accounts without one are `unaccounted`. Null
      scores never count.
    - Respondents: each email (case-insensitive, blank as none) counts once with its latest
      scored response in the period, matched to an account or not; a response without an
      email is a respondent of its own.
    """
    revenue_at_end = (
        select(RevenueRecord.account_id, RevenueRecord.amount)
        .where(RevenueRecord.tenant_id == tenant_id, RevenueRecord.effective_at < end)
        .ext(distinct_on(RevenueRecord.account_id))
        .order_by(RevenueRecord.account_id, RevenueRecord.effective_at.desc())
        .cte("revenue_at_end")
    )
    scored = (
        select(
            SurveyResponse.id,
            SurveyResponse.account_id,
            SurveyResponse.score,
            SurveyResponse.submitted_at,
            SurveyResponse.response_id,
            SurveyResponse.source,
            func.nullif(func.lower(func.btrim(SurveyResponse.email)), "").label("respondent"),
        )
        .where(
            SurveyResponse.tenant_id == tenant_id,
            SurveyResponse.score.is_not(None),
            SurveyResponse.submitted_at >= start,
            SurveyResponse.submitted_at < end,
        )
        .cte("scored")
    )
    latest_by_account = (
        select(scored.c.account_id, scored.c.score)
        .where(scored.c.account_id.is_not(None))
        .ext(distinct_on(scored.c.account_id))
        .order_by(
            scored.c.account_id,
            scored.c.submitted_at.desc(),
            scored.c.response_id.desc(),
            scored.c.source.desc(),
        )
        .cte("latest_by_account")
    )
    bucket = case(
        (latest_by_account.c.score.is_(None), literal("unaccounted")),
        (latest_by_account.c.score <= 6, literal("at_risk")),
        (latest_by_account.c.score <= 8, literal("passive")),
        else_=literal("safe"),
    )
    classified = (
        select(revenue_at_end.c.amount, bucket.label("bucket"))
        .select_from(
            revenue_at_end.outerjoin(
                latest_by_account, latest_by_account.c.account_id == revenue_at_end.c.account_id
            )
        )
        .where(revenue_at_end.c.amount > 0)
        .cte("classified")
    )
    # A response without an email is its own respondent: its row id stands in for one.
    own_respondent = case((scored.c.respondent.is_(None), scored.c.id))
    latest_by_respondent = (
        select(scored.c.score)
        .ext(distinct_on(scored.c.respondent, own_respondent))
        .order_by(
            scored.c.respondent,
            own_respondent,
            scored.c.submitted_at.desc(),
            scored.c.response_id.desc(),
            scored.c.source.desc(),
        )
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
        account_totals.join(respondent_totals, true()).join(response_totals, true())
    )


async def coverage_totals(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime
) -> CoverageTotals:
    row = (await session.execute(coverage_statement(tenant_id, start, end))).mappings().one()
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
