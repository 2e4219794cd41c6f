import uuid
from decimal import Decimal
from functools import lru_cache
from zoneinfo import available_timezones

from pydantic import Field, field_validator

from app.money import validate_currency
from app.reports.schemas import Rollup
from app.schemas import ReadModel, WriteModel


def validate_timezone(name: str) -> str:
    if name not in _timezones():
        raise ValueError(f"{name!r} is not an IANA time zone name such as UTC or Europe/Berlin")
    return name


# Zone names whose meaning depends on the host, or that are placeholders.
_EXCLUDED_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@lru_cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones()) - _EXCLUDED_ZONES


class TenantRead(ReadModel):
    id: uuid.UUID
    name: str
    timezone: str = Field(description="IANA time zone in which periods start and end.")
    reporting_currency: str = Field(description="ISO 4217 code of all revenue amounts.")
    coverage_target: float = Field(description="Share of revenue that should give feedback.")
    default_rollup: Rollup = Field(description="Roll-up rule of reports that name none.")
    fiscal_year_start_month: int = Field(description="Month (1-12) in which fiscal years start.")
    account_nps_safe_above: int = Field(
        description="Under the `account_nps` rule, an account NPS above this is safe."
    )
    account_nps_at_risk_below: int = Field(
        description="Under the `account_nps` rule, an account NPS below this is at risk."
    )


class TenantUpdate(WriteModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, examples=["Europe/Berlin"])
    reporting_currency: str | None = Field(default=None, examples=["EUR"])
    coverage_target: Decimal | None = Field(
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

    @field_validator("timezone")
    @classmethod
    def check_timezone(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)

    @field_validator("reporting_currency")
    @classmethod
    def check_currency(cls, value: str | None) -> str | None:
        return None if value is None else validate_currency(value)


class TenantCreated(ReadModel):
    """A new tenant with its first API key; the key is shown only here."""

    tenant_id: uuid.UUID
    api_key: str
