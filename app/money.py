"""Currencies and exact amounts: ISO 4217 codes, their minor units, and decimal strings."""

from decimal import Decimal
from functools import lru_cache

from iso4217 import Currency

# Amounts at or above this are rejected as input errors (a thousand trillion).
MAX_AMOUNT = Decimal(10) ** 15


@lru_cache
def currency_exponent(code: str) -> int:
    """Return the number of minor-unit digits of an ISO 4217 currency (2 for USD, 0 for JPY).

    Raises ValueError for an unknown code or one without minor units (gold, SDR, test codes).
    """
    try:
        currency = Currency(code)
    except ValueError:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code such as USD or EUR") from None
    if currency.exponent is None:
        raise ValueError(f"{code!r} has no minor unit, so it cannot hold revenue amounts")
    return int(currency.exponent)


@lru_cache
def _minor_unit(exponent: int) -> Decimal:
    """Return the smallest amount with `exponent` minor-unit digits, such as 0.01 for 2."""
    return Decimal(1).scaleb(-exponent)


def validate_currency(code: str) -> str:
    currency_exponent(code)
    return code


# Characters of a rejected number shown in its error message, since a client's value can
# have thousands of digits.
MAX_SHOWN_NUMBER = 40


def shown_number(value: Decimal) -> str:
    """Return `value` as text for an error message, cut to `MAX_SHOWN_NUMBER` characters."""
    text = str(value)
    return text if len(text) <= MAX_SHOWN_NUMBER else text[: MAX_SHOWN_NUMBER - 3] + "..."


def validate_amount(amount: Decimal, currency: str) -> Decimal:
    """Check that `amount` is a finite, non-negative value below 10^15 in `currency`'s units."""
    if not amount.is_finite():
        raise ValueError(f"amount must be a finite number, not {shown_number(amount)}")
    if amount < 0:
        raise ValueError(f"amount must not be negative, got {shown_number(amount)}")
    if amount >= MAX_AMOUNT:
        raise ValueError(f"amount must be below 10^15, got {shown_number(amount)}")
    exponent = currency_exponent(currency)
    quantized = amount.quantize(_minor_unit(exponent))
    if amount != quantized:
        raise ValueError(
            f"amount {shown_number(amount)} has more decimal places than {currency} allows "
            f"({exponent})"
        )
    # Turns -0 into 0, and zeros past the minor unit (`0E-17000`, `1.000000`) into the
    # currency's places, which PostgreSQL's NUMERIC can store. Any other amount is returned
    # as the same object.
    places = amount.as_tuple().exponent
    if amount.is_signed() or (isinstance(places, int) and places < -exponent):
        return quantized.copy_abs()
    return amount


def format_amount(amount: Decimal, currency: str) -> str:
    """Render an amount as a decimal string with the currency's minor-unit digits."""
    exponent = currency_exponent(currency)
    return str(amount.quantize(Decimal(1).scaleb(-exponent)))
