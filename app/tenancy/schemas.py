import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import ConfigDict, Field, field_validator

from app.errors import quote_value
from app.money import MAX_AMOUNT, validate_currency
from app.reports.schemas import Rollup
from app.schemas import ExactDecimal, ReadModel, WriteModel


def validate_timezone(name: str) -> str:
    if name not in _timezones():
        raise ValueError(
            f"{quote_value(name)} is not an IANA time zone name such as UTC or Europe/Berlin"
        )
    return name


# Zone names whose meaning depends on the host, or that are placeholders.
_EXCLUDED_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@lru_cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones()) - _EXCLUDED_ZONES


MAX_REVENUE_TIERS = 20
MAX_MIN_RESPONSES = 1_000_000


class RevenueTier(WriteModel):
    """A revenue band of the `tier` segments, from `min_revenue` up to the next tier's."""

    label: str = Field(min_length=1, max_length=100, examples=["25M-250M"])
    min_revenue: ExactDecimal = Field(
        ge=0,
        lt=MAX_AMOUNT,
        description="Inclusive lower bound in the reporting currency, as a decimal string.",
        examples=["25000000"],
    )


class RevenueTierRead(ReadModel):
    label: str
    min_revenue: str = Field(description="Inclusive lower bound in the reporting currency.")


def check_revenue_tiers(tiers: list[RevenueTier]) -> list[RevenueTier]:
    """Raise ValueError unless the tiers start at 0, rise strictly and have distinct labels."""
    if tiers[0].min_revenue != 0:
        raise ValueError("the first tier must have min_revenue 0, so every revenue has a tier")
    for lower, upper in zip(tiers, tiers[1:], strict=False):
        if upper.min_revenue <= lower.min_revenue:
            raise ValueError(
                f"min_revenue must rise from tier to tier, but {upper.label!r} starts at "
                f"{upper.min_revenue} after {lower.label!r} at {lower.min_revenue}"
            )
    labels = [tier.label for tier in tiers]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"tier labels must be distinct, but these repeat: {', '.join(duplicates)}")
    return tiers


class TenantRead(ReadModel):
    id: uuid.UUID
    name: str
    timezone: str = Field(description="IANA time zone in which periods start and end.")
    reporting_currency: str = Field(
        description="ISO 4217 code of report amounts; revenue in other currencies is "
        "converted at the rates stored with PUT /v1/fx-rates."
    )
    coverage_target: float = Field(description="Share of revenue that should give feedback.")
    default_rollup: Rollup = Field(description="Roll-up rule of reports that name none.")
    fiscal_year_start_month: int = Field(description="Month (1-12) in which fiscal years start.")
    account_nps_safe_above: int = Field(
        description="Under the `account_nps` rule, an account NPS above this is safe."
    )
    account_nps_at_risk_below: int = Field(
        description="Under the `account_nps` rule, an account NPS below this is at risk."
    )
    revenue_tiers: list[RevenueTierRead] = Field(
        description="Revenue bands of the `tier` segments, lowest first."
    )
    min_responses: int = Field(
        description="An NPS figure built on fewer respondents or accounts than this is null."
    )


def _without_null(schema: dict[str, Any]) -> None:
    """Describe each property without its null alternative and null default, since a
    PATCH that sends null is rejected."""
    for field in schema.get("properties", {}).values():
        choices = field.pop("anyOf", None)
        if choices is not None:
            non_null = [choice for choice in choices if choice.get("type") != "null"]
            if len(non_null) == 1:
                field.update(non_null[0])
            else:
                field["anyOf"] = non_null
        if "default" in field and field["default"] is None:
            del field["default"]


class TenantUpdate(WriteModel):
    """The settings to change; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_null)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, examples=["Europe/Berlin"])
    reporting_currency: str | None = Field(default=None, examples=["EUR"])
    coverage_target: ExactDecimal | None = Field(
        default=None,
        gt=0,
        le=1,
        decimal_places=4,
        description="Fraction of revenue, above 0 and at most 1, with up to 4 decimal places.",
    )
    default_rollup: Rollup | None = Field(default=None, examples=["average"])
    fiscal_year_start_month: int | None = Field(
        default=None,
        ge=1,
        le=12,
        description="Month in which fiscal years start; a fiscal year is named by the "
        "calendar year in which it ends.",
    )
    account_nps_safe_above: int | None = Field(default=None, ge=-100, le=100)
    account_nps_at_risk_below: int | None = Field(
        default=None,
        ge=-100,
        le=100,
        description="At most `account_nps_safe_above`.",
    )
    revenue_tiers: list[RevenueTier] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REVENUE_TIERS,
        description="Revenue bands of the `tier` segments, lowest first: the first starts "
        "at 0 and each ends where the next starts. Replaced as a whole.",
    )
    min_responses: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MIN_RESPONSES,
        description="Smallest sample behind an NPS figure: respondents for the respondent "
        "NPS, covered accounts for the account and revenue-weighted NPS.",
    )

    @field_validator("*", mode="before")
    @classmethod
    def reject_null(cls, value: object) -> object:
        """Reject an explicit null: every setting has a value, so null could only be read as
        "keep it", which leaving the field out already means."""
        if value is None:
            raise ValueError("null is not a value of this setting; leave the field out to keep it")
        return value

    @field_validator("timezone")
    @classmethod
    def check_timezone(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)

    @field_validator("revenue_tiers")
    @classmethod
    def check_tiers(cls, value: list[RevenueTier] | None) -> list[RevenueTier] | None:
        return None if value is None else check_revenue_tiers(value)

    @field_validator("reporting_currency")
    @classmethod
    def check_currency(cls, value: str | None) -> str | None:
        return None if value is None else validate_currency(value)


class TenantCreated(ReadModel):
    """A new tenant with its first API key; the key is shown only here."""

    tenant_id: uuid.UUID
    api_key: str = Field(repr=False)


ApiKeyScope = Literal["ingest", "read", "admin"]


class ApiKeyCreate(WriteModel):
    name: str = Field(min_length=1, max_length=200, examples=["crm-sync"])
    scopes: list[ApiKeyScope] = Field(
        min_length=1,
        max_length=3,
        description="What the key may do: `read` (GET routes except API keys and the "
        "audit log), `ingest` (writes of accounts, contacts and responses), `admin` "
        "(settings, webhook endpoints, API keys, deletion, erasure and the audit log).",
        examples=[["ingest"]],
        json_schema_extra={"uniqueItems": True},
    )

    @field_validator("scopes")
    @classmethod
    def check_distinct(cls, value: list[ApiKeyScope]) -> list[ApiKeyScope]:
        if len(set(value)) != len(value):
            raise ValueError("scopes must not repeat; list each scope once")
        return value


class ApiKeyRead(ReadModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(
        description="The first characters of the key: scheme, tenant id and 6 of the 43 "
        "random characters, enough to tell keys apart."
    )
    scopes: list[ApiKeyScope]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """A new API key; the key itself is shown only here."""

    api_key: str = Field(repr=False)


class ShareTokenCreate(WriteModel):
    name: str = Field(
        min_length=1,
        max_length=200,
        description="What the token is for, such as the display that shows the widget.",
        examples=["lobby-screen"],
    )


class ShareTokenRead(ReadModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(
        description="The first characters of the token: scheme, tenant id and 6 of the 43 "
        "random characters, enough to tell tokens apart."
    )
    created_at: datetime
    revoked_at: datetime | None


class ShareTokenCreated(ShareTokenRead):
    """A new share token; the token itself is shown only here."""

    share_token: str = Field(repr=False)
