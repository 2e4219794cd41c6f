"""Revenue coverage reports.

Aggregates come from one SQL statement (`queries.py`); this module only turns exact
sums into ratios. Ratios round half away from zero: shares and coverage to 4 decimal
places, NPS to 2, and each is rounded on its own, so shares need not add up to exactly 1.
"""

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.money import format_amount
from app.periods import Period
from app.reports import queries
from app.reports.schemas import (
    AccountCountsRead,
    BucketRead,
    BucketsRead,
    CoverageReport,
    NpsRead,
    PeriodRead,
    ResponseCountsRead,
)
from app.tenancy.models import Tenant

ROLLUP_LATEST = "latest"


def _ratio(numerator: Decimal | int, denominator: Decimal | int, places: int) -> float | None:
    if denominator == 0:
        return None
    exact = Decimal(numerator) / Decimal(denominator)
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _nps(positive: Decimal | int, negative: Decimal | int, total: Decimal | int) -> float | None:
    if total == 0:
        return None
    exact = Decimal(100) * (Decimal(positive) - Decimal(negative)) / Decimal(total)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


async def coverage(session: AsyncSession, tenant: Tenant, period: Period) -> CoverageReport:
    totals = await queries.coverage_totals(session, tenant.id, period.start, period.end)
    currency = tenant.reporting_currency
    revenue = totals.bucket_revenue
    accounts = totals.bucket_accounts
    covered_revenue = totals.total_revenue - revenue["unaccounted"]
    covered_accounts = totals.total_accounts - accounts["unaccounted"]
    target = Decimal(tenant.coverage_target)

    buckets = {
        name: BucketRead(
            revenue=format_amount(revenue[name], currency),
            accounts=accounts[name],
            share=_ratio(revenue[name], totals.total_revenue, 4),
        )
        for name in queries.BUCKETS
    }
    return CoverageReport(
        period=PeriodRead(
            label=period.label, start=period.start, end=period.end, timezone=period.timezone
        ),
        currency=currency,
        rollup=ROLLUP_LATEST,
        target=float(target),
        total_revenue=format_amount(totals.total_revenue, currency),
        covered_revenue=format_amount(covered_revenue, currency),
        coverage=_ratio(covered_revenue, totals.total_revenue, 4),
        meets_target=totals.total_revenue > 0 and covered_revenue >= target * totals.total_revenue,
        buckets=BucketsRead(**buckets),
        accounts=AccountCountsRead(total=totals.total_accounts, covered=covered_accounts),
        responses=ResponseCountsRead(
            scored=totals.scored_responses, unmatched=totals.unmatched_responses
        ),
        nps=NpsRead(
            respondent=_nps(totals.promoters, totals.detractors, totals.respondents),
            account=_nps(accounts["safe"], accounts["at_risk"], covered_accounts),
            revenue_weighted=_nps(revenue["safe"], revenue["at_risk"], covered_revenue),
        ),
    )
