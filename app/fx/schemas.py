from datetime import datetime
from decimal import Decimal

from pydantic import Field, field_validator

from app.money import shown_number
from app.schemas import CurrencyCode, ExactDecimal, ReadModel, Timestamp, WriteModel

# Rates must be below this and carry at most this many decimal places (the column's limits).
MAX_RATE = Decimal(10) ** 9
RATE_PLACES = 12


class FxRateInput(WriteModel):
    currency: CurrencyCode = Field(
        description="ISO 4217 code of the revenue currency; not the reporting currency.",
        examples=["EUR"],
    )
    rate: ExactDecimal = Field(
        description="Units of the reporting currency per unit of `currency`, as a JSON number "
        "or decimal string: above 0, below 10^9, at most 12 decimal places.",
        examples=["1.10"],
    )
    effective_at: Timestamp = Field(
        description="When the rate takes effect, with offset; it is in force until the next rate."
    )

    @field_validator("rate")
    @classmethod
    def check_rate(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError(f"rate must be a finite number, not {shown_number(value)}")
        if value <= 0:
            raise ValueError(f"rate must be above 0, got {shown_number(value)}")
        if value >= MAX_RATE:
            raise ValueError(f"rate must be below 10^9, got {shown_number(value)}")
        if value != value.quantize(Decimal(1).scaleb(-RATE_PLACES)):
            raise ValueError(
                f"rate {shown_number(value)} has more than {RATE_PLACES} decimal places"
            )
        return value


class FxRateBatch(WriteModel):
    rates: list[FxRateInput] = Field(min_length=1, max_length=10_000)


class FxRateRead(ReadModel):
    currency: str
    reporting_currency: str = Field(
        description="The reporting currency the rate is quoted in; reports use only rates "
        "quoted in the tenant's current reporting currency."
    )
    rate: str = Field(description="Exact decimal string.", examples=["1.1"])
    effective_at: datetime


class FxRateUpdateResult(ReadModel):
    """Counts of rates, after repeated (currency, effective_at) pairs are merged."""

    created: int = Field(description="New rates.")
    updated: int = Field(description="Rates whose value changed.")
    unchanged: int = Field(description="Rates that were already stored as sent.")
