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
    UNASSIGNED_SEGMENT,
    AccountCountsRead,
    BucketRead,
    BucketsRead,
    ClassificationRead,
    ClassifiedResponseRead,
    CoverageReport,
    Granularity,
    HalfRevenueAccountsRead,
    Level,
    NpsFigure,
    NpsRead,
    NullReason,
    PeriodRead,
    ResponseCountsRead,
    Rollup,
    SegmentBy,
    SegmentCoverage,
    SegmentDimension,
    SegmentsReport,
    TrendReport,
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


def report_window(
    tenant: Tenant, period: Period, level: Level = Level.ACCOUNT
) -> queries.ReportWindow:
    return queries.ReportWindow(
        tenant_id=tenant.id,
        start=period.start,
        end=period.end,
        as_of=period.as_of,
        reporting_currency=tenant.reporting_currency,
        level=level,
    )


def rollup_rule(tenant: Tenant, rollup: Rollup | None) -> queries.RollupRule:
    return queries.RollupRule(
        rollup=rollup if rollup is not None else Rollup(tenant.default_rollup),
        account_nps_safe_above=tenant.account_nps_safe_above,
        account_nps_at_risk_below=tenant.account_nps_at_risk_below,
    )


def _period_read(period: Period) -> PeriodRead:
    return PeriodRead(
        label=period.label, start=period.start, end=period.end, timezone=period.timezone
    )


def _nps_figure(
    positive: Decimal | int,
    negative: Decimal | int,
    total: Decimal | int,
    sample: int,
    min_responses: int,
) -> tuple[float | None, NullReason | None]:
    """Return an NPS figure, or None with the reason when its denominator or sample is too small."""
    if total == 0:
        return None, NullReason.NO_DATA
    if sample < min_responses:
        return None, NullReason.INSUFFICIENT_SAMPLE
    return _nps(positive, negative, total), None


def _nps_read(totals: queries.CoverageTotals, min_responses: int) -> NpsRead:
    """Build the three NPS figures, each of which needs `min_responses` respondents or
    covered accounts."""
    revenue = totals.bucket_revenue
    accounts = totals.bucket_accounts
    covered_revenue = totals.total_revenue - revenue["unaccounted"]
    covered_accounts = totals.total_accounts - accounts["unaccounted"]
    figures: dict[NpsFigure, tuple[float | None, NullReason | None]] = {
        "respondent": _nps_figure(
            totals.promoters,
            totals.detractors,
            totals.respondents,
            totals.respondents,
            min_responses,
        ),
        "account": _nps_figure(
            accounts["safe"], accounts["at_risk"], covered_accounts, covered_accounts, min_responses
        ),
        "revenue_weighted": _nps_figure(
            revenue["safe"], revenue["at_risk"], covered_revenue, covered_accounts, min_responses
        ),
    }
    return NpsRead(
        respondent=figures["respondent"][0],
        account=figures["account"][0],
        revenue_weighted=figures["revenue_weighted"][0],
        null_reasons={name: reason for name, (_, reason) in figures.items() if reason is not None},
    )


def _coverage_report(
    tenant: Tenant,
    period: Period,
    rule: queries.RollupRule,
    level: Level,
    totals: queries.CoverageTotals,
) -> CoverageReport:
    """Turn one period's aggregates into the coverage report."""
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
        level=level,
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
        nps=_nps_read(totals, tenant.min_responses),
        accounts_for_half_revenue=HalfRevenueAccountsRead(**totals.accounts_for_half_revenue),
    )


async def coverage(
    session: AsyncSession,
    tenant: Tenant,
    period: Period,
    *,
    rollup: Rollup | None = None,
    level: Level = Level.ACCOUNT,
) -> CoverageReport:
    """Build the coverage report under `rollup`, or the tenant's default rule when None."""
    rule = rollup_rule(tenant, rollup)
    totals = await queries.coverage_totals(session, report_window(tenant, period, level), rule)
    return _coverage_report(tenant, period, rule, level, totals)


def _segment_key(tenant: Tenant, by: SegmentBy) -> queries.SegmentKey:
    tiers = tuple(
        queries.TierBand(label=tier["label"], min_revenue=Decimal(tier["min_revenue"]))
        for tier in tenant.revenue_tiers
    )
    return queries.SegmentKey(
        dimension=by.dimension.value,
        attribute=by.attribute,
        tiers=tiers if by.dimension is SegmentDimension.TIER else (),
    )


async def segments(
    session: AsyncSession,
    tenant: Tenant,
    period: Period,
    by: SegmentBy,
    *,
    rollup: Rollup | None = None,
    level: Level = Level.ACCOUNT,
) -> SegmentsReport:
    """Build the coverage report of each segment of accounts, all from one statement.

    Each segment's figures are those of `coverage` over the segment's accounts and their
    responses, so a segment's NPS pools its own respondents and never averages others.
    """
    rule = rollup_rule(tenant, rollup)
    found = await queries.segment_totals(
        session, report_window(tenant, period, level), rule, _segment_key(tenant, by)
    )
    reports = [
        SegmentCoverage(
            segment=UNASSIGNED_SEGMENT if row.segment is None else row.segment,
            unassigned=row.segment is None,
            **dict(_coverage_report(tenant, period, rule, level, row.totals)),
        )
        for row in found
    ]
    return SegmentsReport(by=by.label, segments=reports)


async def trend(
    session: AsyncSession,
    tenant: Tenant,
    periods: list[Period],
    *,
    granularity: Granularity,
    rollup: Rollup | None = None,
    level: Level = Level.ACCOUNT,
) -> TrendReport:
    """Build the coverage report of each period, in order, all from one statement."""
    rule = rollup_rule(tenant, rollup)
    windows = [report_window(tenant, period, level) for period in periods]
    found = await queries.trend_totals(session, tenant.id, windows, rule)
    return TrendReport(
        granularity=granularity,
        periods=[
            _coverage_report(tenant, period, rule, level, totals)
            for period, totals in zip(periods, found, strict=True)
        ],
    )


async def classification(
    session: AsyncSession,
    tenant: Tenant,
    external_id: str,
    period: Period,
    *,
    rollup: Rollup | None = None,
    level: Level = Level.ACCOUNT,
) -> ClassificationRead:
    """Explain one account's bucket: its revenue, the rule's figure and the responses.

    The account is explained as the account it counts as in the period: itself, the
    survivor once a merge of it is in force, or at `level=parent` its top-level family.
    Raises AccountNotFoundError for an unknown account.
    """
    account_id = await account_service.get_account_id(session, tenant.id, external_id)
    rule = rollup_rule(tenant, rollup)
    # NOTE: every response of the account in the period is returned, without pagination.
    found = await queries.account_classification(
        session, report_window(tenant, period, level), rule, account_id
    )
    reported_as = await account_service.external_id(session, tenant.id, found.report_account_id)

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
        reported_as=reported_as,
        period=_period_read(period),
        rollup=rule.rollup,
        level=level,
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
