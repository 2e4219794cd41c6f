from enum import StrEnum

from pydantic import BaseModel, Field

from app.reports.schemas import Level, PeriodRead, Rollup


class FlowState(StrEnum):
    """An account's state in a period: a coverage bucket, or outside the revenue base."""

    AT_RISK = "at_risk"
    PASSIVE = "passive"
    SAFE = "safe"
    UNACCOUNTED = "unaccounted"
    NOT_IN_BASE = "not_in_base"


class FlowRead(BaseModel):
    """Accounts that were in `from_state` in the opening period and `to_state` in the closing."""

    from_state: FlowState
    to_state: FlowState
    accounts: int
    revenue_from: str = Field(
        description="Their revenue in the opening period, exact decimal string; 0 for "
        "`not_in_base`."
    )
    revenue_to: str = Field(
        description="Their revenue in the closing period, exact decimal string; 0 for "
        "`not_in_base`."
    )


class FlowReport(BaseModel):
    """Revenue moving between buckets from one period to another, like an ARR bridge."""

    from_period: PeriodRead = Field(serialization_alias="from")
    to_period: PeriodRead = Field(serialization_alias="to")
    currency: str
    rollup: Rollup
    level: Level
    flows: list[FlowRead] = Field(
        description="One row per pair of states with at least one account, by state order "
        "(at_risk, passive, safe, unaccounted, not_in_base) of `from_state`, then "
        "`to_state`; accounts outside the base in both periods are left out."
    )
