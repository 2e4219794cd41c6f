"""Schema bases and cursor pagination shared by every domain."""

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from app.errors import InvalidField, UnprocessableError
from app.money import validate_currency

MAX_EMAIL_LENGTH = 320


def validate_email(value: str) -> str:
    """Return the email without surrounding spaces, or raise ValueError.

    A valid email is a non-empty local part, an @ and a non-empty domain, with no spaces or
    control characters. The check is loose on purpose, because the service only compares
    emails and never sends mail to them. Letter case is kept, and the database compares
    emails lower-cased.
    """
    email = value.strip()
    local, _, domain = email.rpartition("@")
    if (
        not local
        or not domain
        or len(email) > MAX_EMAIL_LENGTH
        or any(character.isspace() or not character.isprintable() for character in email)
    ):
        # The value is left out of the message, because error details are logged.
        raise ValueError(
            "not an email address such as jane@acme.com "
            f"(at most {MAX_EMAIL_LENGTH} characters, no spaces)"
        )
    return email


EmailAddress = Annotated[
    str,
    Field(max_length=MAX_EMAIL_LENGTH, examples=["jane@acme.com"]),
    AfterValidator(validate_email),
]

NUL_MESSAGE = "the NUL character (U+0000) is not accepted in text; remove it"
SURROGATE_MESSAGE = "a lone UTF-16 surrogate (\\ud800-\\udfff) is not valid text"


def text_problem(text: str) -> str | None:
    """Return why PostgreSQL cannot store `text` (a NUL or a lone surrogate), else None."""
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 1, 1, tzinfo=UTC)


def check_timestamp_range(value: datetime) -> datetime:
    """Accept instants from 1970 up to the year 9999, which PostgreSQL and Python both hold."""
    if EARLIEST_TIMESTAMP.year < value.year < LATEST_TIMESTAMP.year - 1:
        # A UTC offset is less than a day, so only the first and the last two years can
        # fall outside the range. Skipping the conversion matters in batches of 10,000.
        return value
    try:
        instant = value.astimezone(UTC)
    except OverflowError:
        instant = None
    if instant is None or not EARLIEST_TIMESTAMP <= instant < LATEST_TIMESTAMP:
        raise ValueError(
            f"{value.isoformat()} is outside the accepted range, "
            "1970-01-01T00:00:00Z up to 9999-01-01T00:00:00Z"
        )
    return value


def _require_text_timestamp(value: Any) -> Any:
    # A bare number is ambiguous (seconds or milliseconds), so only ISO 8601 text is read.
    if isinstance(value, str):
        if value.strip().lstrip("-").isdigit():
            raise ValueError("a timestamp must be an ISO 8601 string with a UTC offset")
        if len(value) == 10 and value[4] == "-" and value[7] == "-":
            raise ValueError(
                f"{value!r} is a date without a time; send a timestamp with a UTC offset, "
                f"such as {value}T00:00:00Z"
            )
        return value
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        raise ValueError("a timestamp must be an ISO 8601 string with a UTC offset")
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_require_text_timestamp),
    AfterValidator(check_timestamp_range),
]


# A decimal string as JSON writes numbers, also with a sign, a bare leading or trailing
# point, or an exponent, and only ASCII digits. Python's Decimal would also read
# surrounding spaces, "_" between digits and digits of other scripts.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# Digits of a decimal written out in full: money, rates and thresholds need far fewer, and
# `1e-999999999` would be a billion digits as text or NUMERIC.
MAX_DECIMAL_DIGITS = 40


def _require_decimal_text(value: object) -> object:
    """Reject a decimal string that is not plain ASCII decimal notation, and a decimal with
    more than `MAX_DECIMAL_DIGITS` digits when written out without an exponent."""
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise PydanticCustomError("decimal_parsing", "Input should be a valid decimal")
        try:
            number = Decimal(value)
        except InvalidOperation:
            # An exponent beyond what Python's decimals hold: far more than the limit.
            raise _too_many_digits() from None
    elif isinstance(value, Decimal):
        number = value
    else:
        return value
    _, digits, exponent = number.as_tuple()
    if isinstance(exponent, int):
        written = max(len(digits), len(digits) + exponent, -exponent + 1)
        if written > MAX_DECIMAL_DIGITS:
            raise _too_many_digits()
    return value


def _too_many_digits() -> PydanticCustomError:
    return PydanticCustomError(
        "decimal_max_digits",
        "Decimal input should have no more than {max_digits} digits when written without an "
        "exponent",
        {"max_digits": MAX_DECIMAL_DIGITS},
    )


ExactDecimal = Annotated[Decimal, BeforeValidator(_require_decimal_text)]
# An ISO 4217 code with a minor unit, such as USD or JPY.
CurrencyCode = Annotated[str, AfterValidator(validate_currency)]


class WriteModel(BaseModel):
    """A request body: unknown fields are rejected, so a misspelt field never passes silently."""

    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list; pass `next_cursor` as `cursor` to get the next page, null at the end."""

    items: list[ItemT]
    next_cursor: str | None


Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page (1-1000).")]
Cursor = Annotated[
    str | None, Query(description="`next_cursor` from the previous page; omit for the first.")
]


CursorT = TypeVar("CursorT", int, str)


def encode_cursor(after: int | str) -> str:
    """Encode the sort key of a page's last item as an opaque cursor."""
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _storable_text(text: str) -> bool:
    """Tell whether PostgreSQL can store the text: no NUL and no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def decode_cursor(cursor: str, kind: type[CursorT]) -> CursorT:
    """Decode a cursor made by `encode_cursor`; a tampered or foreign cursor gets a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position: Any = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        # RecursionError: a cursor of deeply nested JSON arrays, which no page made.
        position = None
    after = position.get("after") if isinstance(position, dict) else None
    out_of_range = isinstance(after, int) and not 0 <= after < 2**63
    # No list stores text with NUL or a lone surrogate, so no page ends at such a key.
    unstorable = isinstance(after, str) and not _storable_text(after)
    if type(after) is not kind or out_of_range or unstorable:
        raise UnprocessableError(
            f"Invalid cursor {cursor[:40]!r}; pass the `next_cursor` value of the previous page.",
            errors=[InvalidField(location="query.cursor", message="not a cursor of this list")],
        )
    return after
