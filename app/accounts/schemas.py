import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from app.money import validate_amount
from app.schemas import CurrencyCode, ExactDecimal, ReadModel, Timestamp, WriteModel

ExternalId = Field(
    min_length=1,
    max_length=200,
    pattern=r"^[^/]+$",
    description="The account's id in your CRM; any text without '/', which URLs cannot carry.",
)
MAX_ATTRIBUTE_DEPTH = 32


def check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    """Accept JSON whose numbers a JSONB column keeps exactly and that nests at most 32 levels.

    JSONB stores numbers as PostgreSQL numerics, but they pass through Python floats on the
    way, so a number a double cannot hold exactly is rejected rather than silently changed.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_ATTRIBUTE_DEPTH:
            raise ValueError(f"attributes nest deeper than {MAX_ATTRIBUTE_DEPTH} levels")
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, Decimal) and not _fits_double(item):
            raise ValueError(
                f"the number {item} in attributes cannot be stored exactly; send it as a string"
            )
    return value


def _fits_double(number: Decimal) -> bool:
    if number.is_finite() and number.adjusted() < 100 and number == number.to_integral_value():
        return True  # Stored as an exact integer.
    converted = float(number)
    return math.isfinite(converted) and Decimal(repr(converted)) == number


MAX_DOMAINS = 100
_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_domain(value: str) -> str:
    """Return the domain lower-cased and without a final dot, or raise ValueError.

    A valid domain is an ASCII host name with at least two labels, and its top-level label
    is not a number.
    """
    domain = value.strip().lower().removesuffix(".")
    labels = domain.split(".")
    valid = (
        len(domain) <= 253
        and len(labels) >= 2
        and all(_HOST_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )
    if not valid:
        raise ValueError(
            f"{value!r} is not an email domain such as acme.com; give the part after the @ "
            "of the respondents' emails, with international names in their xn-- form"
        )
    return domain


Domain = Annotated[str, AfterValidator(normalize_domain)]
AMOUNT_DESCRIPTION = (
    "Revenue as a JSON number or decimal string, at most the currency's minor-unit digits, "
    "0 (churned) up to below 10^15."
)


class _Money(WriteModel):
    # The currency comes first, so that the amount's check can read it.
    currency: CurrencyCode = Field(
        description="ISO 4217 code. Amounts in another currency than the reporting currency "
        "are converted in reports at the rates stored with PUT /v1/fx-rates."
    )
    amount: ExactDecimal = Field(description=AMOUNT_DESCRIPTION, examples=["250000.00"])
    effective_at: Timestamp = Field(description="When this amount takes effect, with offset.")

    @field_validator("amount")
    @classmethod
    def check_amount(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        """Check the amount against its currency's minor unit; without a valid currency,
        only the currency's own error is reported."""
        currency = info.data.get("currency")
        if currency is None:
            return value
        return validate_amount(value, currency)


class RevenueInput(_Money):
    pass


class AccountPut(WriteModel):
    """The account's descriptive fields and domains, replaced as a whole, and optionally a
    revenue record."""

    name: str | None = Field(default=None, max_length=500)
    region: str | None = Field(default=None, max_length=200)
    industry: str | None = Field(default=None, max_length=200)
    owner: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form fields; numbers must fit a double, nesting at most 32 levels.",
    )
    domains: list[Domain] = Field(
        default_factory=list,
        max_length=MAX_DOMAINS,
        description="Email domains of the account's people, such as acme.com: a response "
        "whose email is at one of them counts for this account, unless its account id or "
        "contact says otherwise or another account lists the same domain. Exact match, so "
        "list subdomains too. Replaced as a whole, so a PUT without it removes them all.",
        examples=[["acme.com"]],
    )
    parent_external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^/]+$",
        description="The external id of the parent account, which `level=parent` reports roll "
        "this account into. An unknown parent is created as an empty account; a merged-away "
        "one stands for its survivor. A parent that would make a cycle gets 422. Replaced "
        "like the other fields, so a PUT without it removes the parent.",
        examples=["ACME-GROUP"],
    )
    revenue: RevenueInput | None = None

    @field_validator("attributes")
    @classmethod
    def validate_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_attributes(value)

    @field_validator("domains")
    @classmethod
    def sort_domains(cls, domains: list[str]) -> list[str]:
        return sorted(set(domains))


class RevenueRead(ReadModel):
    amount: str = Field(description="Exact decimal string.", examples=["250000.00"])
    currency: str
    effective_at: datetime


class AccountRead(ReadModel):
    external_id: str
    name: str | None
    region: str | None
    industry: str | None
    owner: str | None
    attributes: dict[str, Any]
    domains: list[str] = Field(description="Email domains that match responses, sorted.")
    revenue: RevenueRead | None = Field(description="The revenue in force now; null if none.")
    parent_external_id: str | None = Field(description="The parent account; null if none.")
    merged_into_external_id: str | None = Field(
        description="For a merged-away account, the account it was merged into; its id now "
        "stands for the survivor in deliveries, responses and revenue updates."
    )
    merged_at: datetime | None = Field(
        description="For a merged-away account, when it left the revenue base."
    )
    created_at: datetime
    updated_at: datetime


class AccountDetail(AccountRead):
    revenue_history: list[RevenueRead] = Field(description="Every record, newest effective first.")


class RevenueUpdate(_Money):
    account_external_id: str = ExternalId
    account_name: str | None = Field(
        default=None, max_length=500, description="Sets the name when the account is created."
    )


class RevenueUpdateBatch(WriteModel):
    updates: list[RevenueUpdate] = Field(min_length=1, max_length=10_000)


# pydantic (2.14) reads a JSON number through a binary float, so 90071992547409.93
# becomes 90071992547409.94, while `ServiceRequest.json_document` keeps its decimal text.
_NUMBER_AMOUNT = re.compile(rb'"amount"\s*:\s*[^"\s]')
# A \u escape of an ASCII character could spell the "amount" key, or a NUL.
_ASCII_ESCAPE = re.compile(rb"\\u00[0-7]")
# Each key of an update, quoted as in the JSON text.
_UPDATE_KEYS = tuple(f'"{name}"'.encode() for name in RevenueUpdate.model_fields)


def parse_revenue_update_batch(body: bytes) -> RevenueUpdateBatch | None:
    """Validate a batch straight from its JSON bytes, which takes half the time of parsing
    the JSON document first. Returns None for a body this cannot read exactly and for an
    invalid one, which FastAPI then validates from the JSON document and reports."""
    if _NUMBER_AMOUNT.search(body) or _ASCII_ESCAPE.search(body):
        return None
    try:
        batch = RevenueUpdateBatch.model_validate_json(body)
    except ValidationError:
        return None
    # pydantic keeps the last value of a repeated key, which the exact path rejects. A
    # key written more often than there are updates may be repeated in one of them.
    if body.count(b'"updates"') > 1 or any(
        body.count(key) > len(batch.updates) for key in _UPDATE_KEYS
    ):
        return None
    return batch


class RevenueUpdateResult(ReadModel):
    """Counts of revenue records, after repeated (account, effective_at) pairs are merged."""

    created: int = Field(description="New records.")
    updated: int = Field(description="Records whose amount or currency changed.")
    unchanged: int = Field(description="Records that were already stored as sent.")
    accounts_created: int = Field(description="Accounts that did not exist before.")


class RevenueImportLineError(ReadModel):
    """An invalid line of a CSV import."""

    line: int = Field(description="Line number in the file; the header is line 1.")
    column: str | None = Field(
        default=None, description="The column's header, or null when the line is malformed."
    )
    value: str | None = Field(default=None, description="The value as read, quoted.")
    message: str = Field(description="What is wrong and what is accepted.")

    def location(self) -> str:
        return f"line {self.line}" + (f", column {self.column}" if self.column else "")

    def describe(self) -> str:
        return f"{self.location()}: {self.message}"


class RevenueImportResult(ReadModel):
    """The counts of a CSV import: lines read, applied and rejected. The record counts are
    summed over the chunks of 10,000 lines it is applied in."""

    lines: int = Field(description="Data lines read, without the header and blank lines.")
    accepted: int = Field(description="Valid lines.")
    rejected: int = Field(
        description="Invalid lines, skipped (`on_error=skip`) or rejecting the file."
    )
    created: int = Field(description="New revenue records.")
    updated: int = Field(description="Revenue records whose amount or currency changed.")
    unchanged: int = Field(description="Revenue records that were already stored as sent.")
    accounts_created: int = Field(description="Accounts that did not exist before.")
    errors: list[RevenueImportLineError] = Field(
        default_factory=list, description="The first 100 invalid lines."
    )


class AccountMergeRequest(WriteModel):
    into: str = Field(
        min_length=1,
        max_length=200,
        description="The external id of the surviving account. A merged-away account stands "
        "for its survivor.",
    )
    effective_at: Timestamp | None = Field(
        default=None,
        description="When the merged-away account leaves the revenue base, with offset; "
        "default now. Periods ending at or before it keep its revenue.",
    )


class MergeMovedRead(ReadModel):
    responses: int = Field(description="Responses moved to the survivor.")
    contact_links: int = Field(description="Contact links moved to the survivor.")
    domains: int = Field(description="Email domains moved to the survivor.")
    children: int = Field(description="Child accounts that now have the survivor as parent.")


class AccountMergeResult(ReadModel):
    account_external_id: str = Field(description="The merged-away account.")
    into_external_id: str = Field(description="The account named in `into`.")
    survivor_external_id: str = Field(
        description="The live account at the end of the merge chain, which now holds the "
        "responses, contacts and domains."
    )
    effective_at: datetime
    moved: MergeMovedRead
    replayed: bool = Field(
        description="True when this merge was already recorded and nothing changed."
    )
