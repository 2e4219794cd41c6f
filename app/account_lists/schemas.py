from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from app.contacts.models import ContactRole


class AtRiskSort(StrEnum):
    """Order of the at-risk list; a leading `-` sorts descending."""

    REVENUE_DESC = "-revenue"
    REVENUE = "revenue"
    SCORE = "score"
    SCORE_DESC = "-score"
    SUBMITTED_AT_DESC = "-submitted_at"
    SUBMITTED_AT = "submitted_at"


class SurveyNextSort(StrEnum):
    """Order of the survey-next list; a leading `-` sorts descending."""

    REVENUE_DESC = "-revenue"
    REVENUE = "revenue"


class AtRiskItem(BaseModel):
    """An at-risk account with the response that decided its bucket."""

    account_external_id: str
    name: str | None
    revenue: str = Field(
        description="Revenue in force at the period end (or at `as_of` when earlier), an "
        "exact decimal string in the reporting currency."
    )
    score: int = Field(
        description="Score of the deciding response: the lowest score the rule counted."
    )
    comment: str | None
    email: str | None
    submitted_at: datetime


class ContactItem(BaseModel):
    email: str = Field(description="Lower-cased.")
    role: ContactRole | None


class SurveyNextItem(BaseModel):
    """An unaccounted account of the revenue base, in the order a survey should reach them."""

    account_external_id: str
    name: str | None
    revenue: str = Field(
        description="Revenue in force at the period end (or at `as_of` when earlier), an "
        "exact decimal string in the reporting currency."
    )
    cumulative_coverage: float = Field(
        description="Coverage reached if this account and every unaccounted account with "
        "more revenue (ties: a smaller `account_external_id`) answer, 4 decimal places."
    )
    reaches_target: bool = Field(
        description="Whether `cumulative_coverage` meets the tenant's `coverage_target`, "
        "compared exactly; true from the first such account in revenue order on."
    )
    days_since_last_response: int | None = Field(
        description="Whole 24-hour days from the account's latest scored response submitted "
        "at or before `as_of`, in any period, to `as_of`; null when it has none."
    )
    contacts: list[ContactItem] = Field(
        description="The account's contacts, most senior role first: decision_maker, "
        "influencer, user, then contacts without a role; by email within a role."
    )
