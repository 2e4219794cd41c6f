from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, WithJsonSchema, field_validator

from app.responses.models import MatchRule
from app.schemas import ReadModel, Timestamp, WriteModel, text_problem

SCORE_RULE = (
    "a whole number from 0 to 10, as a JSON integer, a number with a zero fraction such "
    'as 6.0, or a string of digits such as "9"; null means the question was skipped'
)


def _show(value: Any) -> str:
    return str(value) if isinstance(value, Decimal) else repr(value)


def parse_score(value: Any) -> int | None:
    """Read an NPS score the way survey platforms send it; None means skipped.

    Raises ValueError for anything that is not a whole number from 0 to 10.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"score must be {SCORE_RULE}, not a boolean")

    number: Decimal | int
    if isinstance(value, int):
        number = value
    elif isinstance(value, (float, Decimal)):
        try:
            number = Decimal(str(value)) if isinstance(value, float) else value
        except InvalidOperation:
            raise ValueError(f"score must be {SCORE_RULE}, got {_show(value)}") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise ValueError(f"score must be {SCORE_RULE}, got {_show(value)}")
    elif isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit():
            raise ValueError(f"score must be {SCORE_RULE}, got {_show(value)}")
        number = int(text)
    else:
        raise ValueError(f"score must be {SCORE_RULE}, got {_show(value)}")

    if not 0 <= number <= 10:
        raise ValueError(f"score must be {SCORE_RULE}, got {_show(value)} (out of range)")
    return int(number)


Score = Annotated[
    int | None,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 10},
                {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 1},
                {"type": "string", "pattern": r"^\s*\d{1,2}\s*$"},
                {"type": "null"},
            ],
            "description": f"NPS answer: {SCORE_RULE}.",
        }
    ),
]


class ResponseIn(WriteModel):
    """A survey response in the service's own format; the same shape every adapter produces."""

    source: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="The platform or system that collected it, such as typeform.",
    )
    response_id: str = Field(min_length=1, max_length=200, description="The source's own id.")
    account_external_id: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    score: Score = None
    comment: str | None = Field(default=None, max_length=262_144)
    submitted_at: Timestamp
    updated_at: Timestamp | None = Field(
        default=None, description="The source's version time; a later one replaces this one."
    )

    @field_validator("source", "response_id", "account_external_id", "email", "comment")
    @classmethod
    def check_text(cls, value: str | None) -> str | None:
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("score", mode="before")
    @classmethod
    def check_score(cls, value: Any, info: ValidationInfo) -> int | None:
        try:
            return parse_score(value)
        except ValueError as error:
            response_id = info.data.get("response_id")
            if response_id is None:
                raise
            raise ValueError(f"response {response_id!r}: {error}") from None


class ResponseBatch(WriteModel):
    responses: list[ResponseIn] = Field(min_length=1, max_length=10_000)


class ResponseWriteResult(ReadModel):
    """Counts of responses after repeats of one (source, response_id) in the batch are merged."""

    created: int
    updated: int = Field(description="Stored responses replaced by a newer version.")
    unchanged: int = Field(description="Repeats and older versions, which change nothing.")


MATCH_RULES = (
    "`account_external_id`: the account id the response carried; `contact`: the contact "
    "with the respondent's email, linked to one account; `email_domain`: the one account "
    "that lists the email's domain; `manual`: assigned by hand"
)


class ResponseRead(ReadModel):
    source: str
    response_id: str
    account_external_id: str | None = Field(description="Null while no account matches.")
    matched_by: MatchRule | None = Field(
        description=f"How the account was found: {MATCH_RULES}. Null while unmatched."
    )
    email: str | None
    score: int | None
    comment: str | None
    submitted_at: datetime
    updated_at: datetime | None
    received_at: datetime
    erased_at: datetime | None = Field(
        description="When an erasure request removed the email and comment; null if never."
    )


class UnmatchedReason(StrEnum):
    """Reason that no rule found an account: the first one that applies, in this order."""

    UNKNOWN_ACCOUNT = "unknown_account"
    AMBIGUOUS_CONTACT = "ambiguous_contact"
    AMBIGUOUS_DOMAIN = "ambiguous_domain"
    NO_MATCH = "no_match"


class UnmatchedResponseRead(ReadModel):
    source: str
    response_id: str
    sent_account_external_id: str | None = Field(
        description="The account id the response carried, which names no account yet; "
        "null when it carried none."
    )
    reason: UnmatchedReason = Field(
        description="`unknown_account`: create the account it carried; `ambiguous_contact`: "
        "the contact with this email is linked to several accounts; `ambiguous_domain`: "
        "several accounts list the email's domain; `no_match`: no account id, contact or "
        "domain matches. Assign it by hand with POST .../assign."
    )
    email: str | None
    score: int | None
    comment: str | None
    submitted_at: datetime
    updated_at: datetime | None
    received_at: datetime


class AssignmentIn(WriteModel):
    account_external_id: str | None = Field(
        min_length=1,
        max_length=200,
        description="The account to count the response for; null removes a manual "
        "assignment, so that the match rules decide again.",
    )
