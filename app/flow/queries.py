"""The bucket flow statement: every account's state in two periods, summed by pair of states.

It reuses the coverage report's CTE builders from `app.reports.queries`, so each period's
states are exactly the buckets of `/v1/coverage` for that period.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, Subquery, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fx.service import missing_rate_as_error
from app.reports.queries import (
    ReportWindow,
    RollupRule,
    account_buckets_cte,
    account_map_cte,
    counted_cte,
    revenue_at_end_cte,
    scored_cte,
)

STATES = ("at_risk", "passive", "safe", "unaccounted", "not_in_base")


@dataclass(frozen=True)
class FlowRow:
    """Accounts moving from one state to another; money in the reporting currency."""

    from_state: str
    to_state: str
    accounts: int
    revenue_from: Decimal
    revenue_to: Decimal


def _period_states(window: ReportWindow, rule: RollupRule, name: str) -> Subquery:
    """Select each base account of the period with its revenue and bucket.

    The builders name their CTEs alike, so each period's CTEs are nested inside its own
    subquery (`nest_here`) instead of the top-level WITH, where the names would clash.
    The account map is recursive and stays in the top-level WITH under a name of its own.
    """
    account_map = account_map_cte(window, f"{name}_account")
    revenue_at_end = revenue_at_end_cte(window, account_map)
    scored = scored_cte(window, account_map)
    counted = counted_cte(scored, rule.rollup)
    account_buckets = account_buckets_cte(counted, rule)
    return (
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
        .add_cte(revenue_at_end, scored, counted, account_buckets, nest_here=True)
        .subquery(name)
    )


def flow_statement(
    opening: ReportWindow, closing: ReportWindow, rule: RollupRule
) -> Select[tuple[Any, ...]]:
    """Build the flow statement between the opening and the closing period.

    Each period's base (revenue in force at its end above 0) and buckets come from the
    coverage report's rules. An account outside a period's base is `not_in_base` there
    with revenue 0, so the sums of `revenue_from` by `from_state` equal the opening
    report's buckets, and the sums of `revenue_to` by `to_state` the closing report's.
    A full outer join of the two bases leaves out accounts in neither base, so there is
    never a `not_in_base` to `not_in_base` row. Only pairs with accounts appear.
    """
    opened = _period_states(opening, rule, "opening")
    closed = _period_states(closing, rule, "closing")
    from_state = func.coalesce(opened.c.bucket, literal("not_in_base")).label("from_state")
    to_state = func.coalesce(closed.c.bucket, literal("not_in_base")).label("to_state")
    state_order = {state: index for index, state in enumerate(STATES)}
    return (
        select(
            from_state,
            to_state,
            func.count().label("accounts"),
            func.coalesce(func.sum(opened.c.amount), 0).label("revenue_from"),
            func.coalesce(func.sum(closed.c.amount), 0).label("revenue_to"),
        )
        .select_from(
            opened.outerjoin(closed, closed.c.account_id == opened.c.account_id, full=True)
        )
        .group_by(from_state, to_state)
        .order_by(
            case(state_order, value=from_state),
            case(state_order, value=to_state),
        )
    )


async def flow_rows(
    session: AsyncSession, opening: ReportWindow, closing: ReportWindow, rule: RollupRule
) -> list[FlowRow]:
    with missing_rate_as_error():
        result = await session.execute(flow_statement(opening, closing, rule))
    return [
        FlowRow(
            from_state=row.from_state,
            to_state=row.to_state,
            accounts=row.accounts,
            revenue_from=Decimal(row.revenue_from),
            revenue_to=Decimal(row.revenue_to),
        )
        for row in result
    ]
