from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class Rollup(StrEnum):
    """Rule that turns an account's responses in a period into its bucket."""

    LATEST = "latest"
    AVERAGE = "average"
    LOWEST = "lowest"
    ACCOUNT_NPS = "account_nps"
    DECISION_MAKER = "decision_maker"


class Level(StrEnum):
    """The unit a report counts as one account: each account, or each top-level family."""

    ACCOUNT = "account"
    PARENT = "parent"


class PeriodRead(BaseModel):
    label: str = Field(examples=["2026-Q1"])
    start: datetime = Field(description="Inclusive, at local midnight of `timezone`.")
    end: datetime = Field(description="Exclusive, at local midnight of `timezone`.")
    timezone: str


class BucketRead(BaseModel):
    revenue: str = Field(description="Exact decimal string in the reporting currency.")
    accounts: int
    share: float | None = Field(description="Bucket revenue / total revenue, 4 decimal places.")


class BucketsRead(BaseModel):
    at_risk: BucketRead = Field(description="Latest score 0-6 (detractors).")
    passive: BucketRead = Field(description="Latest score 7-8.")
    safe: BucketRead = Field(description="Latest score 9-10 (promoters).")
    unaccounted: BucketRead = Field(description="No scored response in the period.")


class HalfRevenueAccountsRead(BaseModel):
    """Per bucket, the fewest accounts, largest first, whose revenue makes up at least half
    of the bucket's revenue, or 0 for an empty bucket. A 1 or 2 beside a large bucket
    means one or two accounts drive its figures."""

    at_risk: int
    passive: int
    safe: int
    unaccounted: int


class AccountCountsRead(BaseModel):
    total: int = Field(description="Accounts with revenue above 0 at the period end.")
    covered: int = Field(description="Of those, accounts with a scored response in the period.")


class ResponseCountsRead(BaseModel):
    scored: int = Field(description="Responses with a score submitted in the period.")
    unmatched: int = Field(description="Of those, responses not matched to an account.")


class NullReason(StrEnum):
    """The reason an NPS figure is null."""

    NO_DATA = "no_data"
    INSUFFICIENT_SAMPLE = "insufficient_sample"


NpsFigure = Literal["respondent", "account", "revenue_weighted"]


class NpsRead(BaseModel):
    respondent: float | None = Field(
        description="Standard NPS over each respondent's latest score, -100 to 100."
    )
    account: float | None = Field(description="NPS over covered accounts' buckets.")
    revenue_weighted: float | None = Field(
        description="100 x (safe revenue - at-risk revenue) / covered revenue."
    )
    null_reasons: dict[NpsFigure, NullReason] = Field(
        default_factory=dict,
        description="Why each null figure is null. Figures with a value are absent. "
        "`no_data`: the denominator is 0. `insufficient_sample`: fewer respondents "
        "(respondent NPS) or covered accounts (account and revenue-weighted NPS) than the "
        "tenant's `min_responses`.",
        examples=[{"respondent": "insufficient_sample"}],
    )


class CoverageReport(BaseModel):
    """Revenue coverage of NPS feedback in one period; ratios are null when undefined."""

    period: PeriodRead
    currency: str
    rollup: str = Field(description="How an account's responses become its bucket.")
    # The default lets `revcov demo` read reports of servers that predate this field.
    level: Level = Field(
        default=Level.ACCOUNT,
        description="`account`, or `parent` when each top-level account counts with its "
        "descendants as one.",
    )
    target: float
    total_revenue: str
    covered_revenue: str
    coverage: float | None = Field(description="Covered / total revenue, 4 decimal places.")
    meets_target: bool = Field(
        description="Whether `coverage` is at least `target`; false when `coverage` is null."
    )
    buckets: BucketsRead
    accounts: AccountCountsRead
    responses: ResponseCountsRead
    nps: NpsRead
    # The default lets `revcov demo` read reports of servers that predate this field.
    accounts_for_half_revenue: HalfRevenueAccountsRead | None = None


class SegmentDimension(StrEnum):
    """Account field that splits accounts into segments."""

    TIER = "tier"
    REGION = "region"
    INDUSTRY = "industry"
    OWNER = "owner"
    ATTRIBUTE = "attribute"


@dataclass(frozen=True)
class SegmentBy:
    """A parsed `by` parameter, with `attribute` set only for the `attribute` dimension."""

    dimension: SegmentDimension
    attribute: str | None = None

    @property
    def label(self) -> str:
        if self.attribute is None:
            return self.dimension.value
        return f"{self.dimension.value}:{self.attribute}"


UNASSIGNED_SEGMENT = "unassigned"


class SegmentCoverage(CoverageReport):
    """One segment's coverage: the coverage report over the segment's accounts only."""

    segment: str = Field(
        description="The segment's value, or `unassigned` for accounts without one.",
        examples=["EMEA"],
    )
    unassigned: bool = Field(
        description="True for the segment of accounts without a value, which tells it "
        "apart from a value that reads `unassigned`."
    )


class SegmentsReport(BaseModel):
    """Coverage per segment, with segments by total revenue, largest first."""

    by: str = Field(examples=["region", "attribute:plan"])
    segments: list[SegmentCoverage]


class Granularity(StrEnum):
    """Length of each period of a trend."""

    QUARTER = "quarter"
    MONTH = "month"


class TrendReport(BaseModel):
    """Coverage for each period of a range, oldest first."""

    granularity: Granularity
    periods: list[CoverageReport]


class ClassifiedResponseRead(BaseModel):
    source: str
    response_id: str
    email: str | None
    role: str | None = Field(description="The respondent's contact role at the account, if any.")
    score: int | None = Field(description="Null when the NPS question was skipped.")
    submitted_at: datetime
    counted: bool = Field(description="Whether the roll-up rule used this response.")


class ClassificationRead(BaseModel):
    """One account's bucket in a period under a roll-up rule, with the responses behind it."""

    account_external_id: str
    reported_as: str = Field(
        description="The account whose figures these are: the account itself, the "
        "survivor once a merge of it is in force, or at `level=parent` its top-level "
        "ancestor, whose family's revenue and responses are shown."
    )
    period: PeriodRead
    rollup: Rollup
    level: Level
    currency: str
    revenue: str | None = Field(
        description="Revenue in force at the period end (or at `as_of` when earlier); "
        "null when the account has no revenue record by then."
    )
    bucket: str = Field(
        description="`at_risk`, `passive`, `safe`, `unaccounted` (in the revenue base "
        "without a counted response), or `not_in_base` (no revenue above 0)."
    )
    value: float | None = Field(
        description="The rule's figure, 2 decimal places: the deciding score under "
        "`latest`, `lowest` and `decision_maker`, the mean score under `average`, the "
        "account NPS under `account_nps`; null when no response counts."
    )
    responses: list[ClassifiedResponseRead] = Field(
        description="The account's responses submitted in the period, oldest first."
    )
