"""The bucket flow report between two periods (an ARR bridge of NPS buckets)."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.flow import queries
from app.flow.schemas import FlowRead, FlowReport, FlowState
from app.money import format_amount
from app.periods import Period
from app.reports.schemas import Level, PeriodRead, Rollup
from app.reports.service import report_window, rollup_rule
from app.tenancy.models import Tenant


def _period_read(period: Period) -> PeriodRead:
    return PeriodRead(
        label=period.label, start=period.start, end=period.end, timezone=period.timezone
    )


async def flow(
    session: AsyncSession,
    tenant: Tenant,
    opening: Period,
    closing: Period,
    *,
    rollup: Rollup | None = None,
    level: Level = Level.ACCOUNT,
) -> FlowReport:
    """Sum every account's move between its states in the two periods, by pair of states."""
    rule = rollup_rule(tenant, rollup)
    rows = await queries.flow_rows(
        session,
        report_window(tenant, opening, level),
        report_window(tenant, closing, level),
        rule,
    )
    currency = tenant.reporting_currency
    return FlowReport(
        from_period=_period_read(opening),
        to_period=_period_read(closing),
        currency=currency,
        rollup=rule.rollup,
        level=level,
        flows=[
            FlowRead(
                from_state=FlowState(row.from_state),
                to_state=FlowState(row.to_state),
                accounts=row.accounts,
                revenue_from=format_amount(row.revenue_from, currency),
                revenue_to=format_amount(row.revenue_to, currency),
            )
            for row in rows
        ],
    )
