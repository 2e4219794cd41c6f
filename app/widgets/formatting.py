"""Numbers formatted for people: `$1.2B`, `81.4%`.

app/dashboard/static/dashboard.js formats the same way, so the widget and the dashboard
show the same text for the same report.
"""

from decimal import ROUND_HALF_UP, Decimal

# Currencies shown with a symbol. Any other currency is shown by its ISO 4217 code.
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_UNITS = (("T", Decimal(10) ** 12), ("B", Decimal(10) ** 9), ("M", Decimal(10) ** 6))
_THOUSAND = Decimal(1000)


def _with_currency(number: str, currency: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol is not None else f"{currency}\u00a0{number}"


def compact_number(amount: Decimal) -> str:
    """Format a non-negative amount with one decimal in K, M, B or T, or whole below 1,000.

    Rounding is half away from zero, and a trailing `.0` is dropped, so 1,250,000 reads
    `1.3M` and 2,000,000 reads `2M`.
    """
    units = (*_UNITS, ("K", _THOUSAND))
    for index, (suffix, size) in enumerate(units):
        if amount < size:
            continue
        tenths = (amount / size).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        if tenths >= _THOUSAND and index > 0:
            # 999,960 rounds to 1000.0K, which reads better as the next unit up: 1M.
            suffix, size = units[index - 1]
            tenths = (amount / size).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return f"{tenths.normalize():f}{suffix}" if tenths % 1 == 0 else f"{tenths}{suffix}"
    whole = amount.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if whole >= _THOUSAND:
        # 999.5 rounds up to 1,000 units, which reads 1K.
        return "1K"
    return f"{whole:f}"


def compact_money(amount: str | Decimal, currency: str) -> str:
    return _with_currency(compact_number(Decimal(amount)), currency)


def exact_money(amount: str | Decimal, currency: str) -> str:
    """Format an exact amount with thousands separators and its decimals, `$1,234.50`."""
    return _with_currency(f"{Decimal(amount):,f}", currency)


def percent(ratio: float | None) -> str:
    """Format a ratio as a percentage with one decimal, rounded half away from zero.

    A ratio below 1 never reads 100.0% and one above 0 never reads 0.0%: 0.9997 reads
    99.9%, so a gauge does not show full coverage while revenue is unaccounted. A null
    ratio reads `n/a`.
    """
    if ratio is None:
        return "n/a"
    exact = Decimal(str(ratio)) * 100
    value = exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if value == 100 and exact < 100:
        value = Decimal("99.9")
    elif value == 0 and exact > 0:
        value = Decimal("0.1")
    return f"{value}%"
