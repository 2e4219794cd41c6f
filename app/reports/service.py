"""Revenue coverage reports.

Aggregates come from one SQL statement (`queries.py`); this module only turns exact
sums into ratios. Ratios round half away from zero: shares and coverage to 4 decimal
places, NPS to 2, and each is rounded on its own, so shares need not add up to exactly 1.
"""

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as account_service
from app.money import format_amount
from app.periods import Period
from app.reports import queries
from app.reports.schemas import (
    AccountCountsRead,
    BucketRead,
    BucketsRead,
    ClassificationRead,
    ClassifiedResponseRead,
    CoverageReport,
    NpsRead,
    PeriodRead,
    ResponseCountsRead,
    Rollup,
)
from app.tenancy.models import Tenant


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


def _window(tenant: Tenant, period: Period) -> queries.ReportWindow:
    return queries.ReportWindow(
        tenant_id=tenant.id, start=period.start, end=period.end, as_of=period.as_of
    )


def _rule(tenant: Tenant, rollup: Rollup | None) -> queries.RollupRule:
    return queries.RollupRule(
        rollup=rollup if rollup is not None else Rollup(tenant.default_rollup),
        account_nps_safe_above=tenant.account_nps_safe_above,
        account_nps_at_risk_below=tenant.account_nps_at_risk_below,
    )


def _period_read(period: Period) -> PeriodRead:
    return PeriodRead(
        label=period.label, start=period.start, end=period.end, timezone=period.timezone
    )


async def coverage(
    session: AsyncSession, tenant: Tenant, period: Period, *, rollup: Rollup | None = None
) -> CoverageReport:
    """Build the coverage report under `rollup`, or the tenant's default rule when None."""
    rule = _rule(tenant, rollup)
    totals = await queries.coverage_totals(session, _window(tenant, period), rule)
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
        period=_period_read(period),
        currency=currency,
        rollup=rule.rollup.value,
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


async def classification(
    session: AsyncSession,
    tenant: Tenant,
    external_id: str,
    period: Period,
    *,
    rollup: Rollup | None = None,
) -> ClassificationRead:
    """Explain one account's bucket: its revenue, the rule's figure and the responses.

    Raises AccountNotFoundError for an unknown account.
    """
    account_id = await account_service.get_account_id(session, tenant.id, external_id)
    rule = _rule(tenant, rollup)
    # NOTE: every response of the account in the period is returned, without pagination.
    found = await queries.account_classification(session, _window(tenant, period), rule, account_id)

    currency = tenant.reporting_currency
    if found.revenue is None or found.revenue <= 0:
        bucket = "not_in_base"
    else:
        bucket = found.bucket or "unaccounted"
    value = None
    if found.value is not None:
        value = float(found.value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return ClassificationRead(
        account_external_id=external_id,
        period=_period_read(period),
        rollup=rule.rollup,
        currency=currency,
        revenue=None if found.revenue is None else format_amount(found.revenue, currency),
        bucket=bucket,
        value=value,
        responses=[
            ClassifiedResponseRead(
                source=response.source,
                response_id=response.response_id,
                email=response.email,
                role=response.role,
                score=response.score,
                submitted_at=response.submitted_at,
                counted=response.counted,
            )
            for response in found.responses
        ],
    )
