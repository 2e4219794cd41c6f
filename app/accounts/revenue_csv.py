"""Revenue updates from a CSV export of a CRM or billing system.

Columns are found by their header, so their order does not matter and other columns are
ignored. Numbers are read with the decimal and thousands separators the caller declares,
never guessed: `1.234.567,89` needs decimal `,` and thousands `.`, and a value that does
not fit the declared separators rejects its line. Dates without a time are midnight in
the tenant's time zone. Timestamps without a UTC offset are rejected.

Valid lines are applied in chunks through `apply_revenue_updates` within the caller's
transaction. Unless invalid lines may be skipped, one invalid line rejects the whole file
and nothing is written.
"""

import csv
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as account_service
from app.accounts.errors import RevenueCsvInvalidError, RevenueCsvRejectedError
from app.accounts.schemas import (
    RevenueImportLineError,
    RevenueImportResult,
    RevenueUpdate,
    RevenueUpdateBatch,
    RevenueUpdateResult,
)
from app.errors import InvalidField, quote_value
from app.money import validate_amount, validate_currency
from app.schemas import text_problem
from app.tenancy.models import Tenant

log = structlog.get_logger()

CsvField = Literal["account_external_id", "account_name", "amount", "currency", "effective_at"]

# Header names recognised for each field. Headers are compared without case or surrounding
# spaces, and with spaces and hyphens read as underscores, so `Account ID` is `account_id`.
HEADER_NAMES: dict[CsvField, tuple[str, ...]] = {
    "account_external_id": ("account_external_id", "account_id", "external_id"),
    "account_name": ("account_name", "name"),
    "amount": ("amount", "revenue"),
    "currency": ("currency",),
    "effective_at": ("effective_at", "effective_date", "date"),
}
REQUIRED_FIELDS: tuple[CsvField, ...] = ("account_external_id", "amount", "effective_at")

DECIMAL_SEPARATORS = (".", ",")
# Accepted spellings of each thousands separator; "none" means numbers are not grouped.
THOUSANDS_SEPARATORS: dict[str, str | None] = {
    "none": None,
    ",": ",",
    ".": ".",
    " ": " ",
    "space": " ",
    "'": "'",
}
DELIMITERS: dict[str, str] = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|"}
# Characters that some exports put between digits. Such a character where the declared
# separators do not allow it shows that the file uses other separators.
_SEPARATOR_CHARACTERS = frozenset(".,' \u00a0\u202f")
# A space thousands separator also matches the no-break spaces that French exports use.
_SPACE_VARIANTS = ("\u00a0", "\u202f")

# Updates applied per call of `apply_revenue_updates`, the size of one JSON batch.
CHUNK_SIZE = 10_000
# Invalid lines listed in a result or a rejection; the count covers them all.
MAX_LISTED_ERRORS = 100

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class CsvOptions:
    """How to read a file: separators, a currency for lines without one, and header names
    that replace the recognised ones for some fields."""

    decimal: str = "."
    thousands: str | None = None
    delimiter: str = ","
    currency: str | None = None
    columns: dict[CsvField, str] = field(default_factory=dict)
    skip_invalid: bool = False


def parse_options(
    *,
    decimal: str = ".",
    thousands: str = "none",
    delimiter: str = ",",
    currency: str | None = None,
    columns: Iterable[str] = (),
    skip_invalid: bool = False,
    location: Callable[[str], str] = lambda name: name,
) -> CsvOptions:
    """Check option values as the command line or the query string gives them.

    `columns` contains `FIELD=HEADER` pairs. `location` names an option in error messages.
    Raises RevenueCsvInvalidError naming the invalid option.
    """
    problems: list[InvalidField] = []
    if decimal not in DECIMAL_SEPARATORS:
        problems.append(InvalidField(location=location("decimal"), message="must be . or ,"))
    if thousands not in THOUSANDS_SEPARATORS:
        problems.append(
            InvalidField(
                location=location("thousands"),
                message="must be none, comma (,), period (.), space or apostrophe (')",
            )
        )
    elif THOUSANDS_SEPARATORS[thousands] == decimal:
        problems.append(
            InvalidField(
                location=location("thousands"),
                message=f"must differ from the decimal separator {decimal!r}",
            )
        )
    if delimiter not in DELIMITERS:
        problems.append(
            InvalidField(location=location("delimiter"), message="must be , or ; or | or tab")
        )
    if currency is not None:
        try:
            validate_currency(currency)
        except ValueError as error:
            problems.append(InvalidField(location=location("currency"), message=str(error)))
    mapped: dict[CsvField, str] = {}
    for pair in columns:
        name, separator, header = pair.partition("=")
        name = name.strip()
        if not separator or not header.strip() or name not in HEADER_NAMES:
            problems.append(
                InvalidField(
                    location=location("column"),
                    message=f"{pair!r} is not FIELD=HEADER with FIELD one of "
                    f"{', '.join(HEADER_NAMES)}",
                )
            )
            continue
        mapped[name] = header.strip()
    if problems:
        raise RevenueCsvInvalidError(
            "Invalid CSV options: "
            + "; ".join(f"{problem.location} {problem.message}" for problem in problems)
            + ".",
            errors=problems,
        )

    return CsvOptions(
        decimal=decimal,
        thousands=THOUSANDS_SEPARATORS[thousands],
        delimiter=DELIMITERS[delimiter],
        currency=currency,
        columns=mapped,
        skip_invalid=skip_invalid,
    )


def parse_amount(text: str, decimal: str, thousands: str | None) -> Decimal:
    """Read an amount written with the declared separators, or raise ValueError.

    Thousands groups must have three digits each, so `1,23` with thousands `,` is
    rejected rather than read as 123.
    """
    value = text.strip()
    if thousands == " ":
        for variant in _SPACE_VARIANTS:
            value = value.replace(variant, " ")
    sign = ""
    if value.startswith("-"):
        sign, value = "-", value[1:]
    if not value:
        raise ValueError("the amount is empty")

    for character in value:
        if character.isdigit() and character.isascii():
            continue
        if character in (decimal, thousands):
            continue
        if character in _SEPARATOR_CHARACTERS:
            declared = (
                f"thousands separator {thousands!r}" if thousands else "no thousands separator"
            )
            raise ValueError(
                f"{quote_value(text)} contains {character!r}, but the declared separators are "
                f"decimal {decimal!r} and {declared}; declare the separators the file uses"
            )
        raise ValueError(f"{quote_value(text)} is not a number")

    whole, has_fraction, fraction = value.partition(decimal)
    if decimal in fraction:
        raise ValueError(
            f"{quote_value(text)} contains the decimal separator {decimal!r} more than once"
        )
    if thousands is not None and thousands in fraction:
        raise ValueError(
            f"{quote_value(text)} has the thousands separator {thousands!r} after the decimal "
            f"separator {decimal!r}"
        )
    if not whole or (has_fraction and not fraction):
        raise ValueError(f"{quote_value(text)} needs digits on both sides of the decimal separator")
    if thousands is not None and thousands in whole:
        groups = whole.split(thousands)
        if not 1 <= len(groups[0]) <= 3 or any(len(group) != 3 for group in groups[1:]):
            raise ValueError(
                f"{quote_value(text)} has thousands separators {thousands!r} in the wrong places; "
                "each group after the first needs exactly three digits"
            )
        whole = "".join(groups)
    try:
        return Decimal(sign + whole + ("." + fraction if has_fraction else ""))
    except InvalidOperation:
        raise ValueError(f"{quote_value(text)} is not a number") from None


def parse_effective_at(text: str, timezone: str) -> str:
    """Return an ISO 8601 timestamp with offset: a date is midnight in `timezone`, and a
    timestamp must carry its offset. Raises ValueError otherwise."""
    value = text.strip()
    if _DATE.match(value):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(f"{quote_value(text)} is not a valid date") from None
        return datetime.combine(day, time(), tzinfo=ZoneInfo(timezone)).isoformat()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{quote_value(text)} is not a date such as 2026-01-01 or an ISO 8601 timestamp "
            "such as 2026-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"{quote_value(text)} has no UTC offset; add one (such as Z or +01:00) or give a "
            "date alone"
        )
    return moment.isoformat()


def decode_lines(
    chunks: Iterable[bytes], progress: Callable[[int], None] | None = None
) -> Iterator[str]:
    """Decode UTF-8 lines (a byte order mark is dropped), naming the line of invalid bytes.

    `progress` is called with the byte count of each line as it is read.
    """
    for number, raw in enumerate(chunks, start=1):
        if progress is not None:
            progress(len(raw))
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise RevenueCsvInvalidError(
                f"Line {number} is not valid UTF-8; export the file as UTF-8.",
                errors=[InvalidField(location=f"line {number}", message="not valid UTF-8")],
            ) from None
        yield line


def _normalise_header(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _header_columns(header: list[str], options: CsvOptions) -> dict[CsvField, int]:
    """Map each field to its column index, or raise RevenueCsvInvalidError."""
    names = [_normalise_header(name) for name in header]
    columns: dict[CsvField, int] = {}
    for csv_field, recognised in HEADER_NAMES.items():
        if csv_field in options.columns:
            expected_header = _normalise_header(options.columns[csv_field])
            if expected_header not in names:
                raise _header_error(
                    f"The header has no column {options.columns[csv_field]!r} for "
                    f"{csv_field}; it has {', '.join(map(repr, header))}."
                )
            matches = [index for index, name in enumerate(names) if name == expected_header]
        else:
            matches = [index for index, name in enumerate(names) if name in recognised]
        if len(matches) > 1:
            raise _header_error(
                f"The header has {len(matches)} columns for {csv_field} "
                f"({', '.join(repr(header[index]) for index in matches)}); map one with "
                f"column {csv_field}=HEADER."
            )
        if matches:
            columns[csv_field] = matches[0]

    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if "currency" not in columns and options.currency is None:
        missing.append("currency")
    if missing:
        accepted = "; ".join(f"{name}: {' or '.join(HEADER_NAMES[name])}" for name in missing)
        raise _header_error(
            f"The header lacks a column for {', '.join(missing)}. Accepted names: {accepted}. "
            f"Map another header with column FIELD=HEADER"
            + (", or give a default currency." if "currency" in missing else ".")
            + _delimiter_hint(header, options)
        )
    return columns


def _delimiter_hint(header: list[str], options: CsvOptions) -> str:
    """Suggest the delimiter of a header that reads as one column because it splits on
    another separator, or return an empty string."""
    if len(header) != 1:
        return ""
    for separator, name in ((";", ";"), ("\t", "a tab"), ("|", "|")):
        if separator != options.delimiter and separator in header[0]:
            return (
                f" The header is one column that contains {name}: if that separates the "
                f"columns, set delimiter to {name}."
            )
    return ""


def _header_error(message: str) -> RevenueCsvInvalidError:
    return RevenueCsvInvalidError(
        message, errors=[InvalidField(location="line 1", message=message)]
    )


class _Reader:
    """An iterator of validated revenue updates and invalid-line reports from CSV lines."""

    def __init__(self, lines: Iterable[str], options: CsvOptions, timezone: str) -> None:
        self.options = options
        self.timezone = timezone
        self.rows = csv.reader(lines, delimiter=options.delimiter, strict=True)
        try:
            header = next(self.rows)
        except StopIteration:
            raise _header_error("The file is empty; the first line must be a header.") from None
        except csv.Error as error:
            raise _header_error(f"Line 1 is not valid CSV: {error}.") from None
        self.width = len(header)
        self.columns = _header_columns(header, options)
        self.headers = {name: header[index].strip() for name, index in self.columns.items()}

    def __iter__(self) -> Iterator[RevenueUpdate | RevenueImportLineError]:
        while True:
            try:
                row = next(self.rows)
            except StopIteration:
                return
            except csv.Error as error:
                line = self.rows.line_num
                raise RevenueCsvInvalidError(
                    f"Line {line} is not valid CSV: {error}.",
                    errors=[InvalidField(location=f"line {line}", message=str(error))],
                ) from None
            if not any(cell.strip() for cell in row):
                continue
            yield self._update(row, self.rows.line_num)

    def _update(self, row: list[str], line: int) -> RevenueUpdate | RevenueImportLineError:
        if len(row) != self.width:
            return RevenueImportLineError(
                line=line,
                message=f"the line has {len(row)} fields, but the header has {self.width}",
            )
        values: dict[str, Any] = {}
        for csv_field, index in self.columns.items():
            cell = row[index].strip()
            if problem := text_problem(cell):
                return self._error(line, csv_field, cell, problem)
            values[csv_field] = cell or None
        if values.get("currency") is None:
            values["currency"] = self.options.currency

        for csv_field in REQUIRED_FIELDS:
            if values.get(csv_field) is None:
                return self._error(line, csv_field, "", "the value is missing")
        try:
            validate_currency(values["currency"])
        except ValueError as error:
            return self._error(line, "currency", values["currency"], str(error))
        try:
            amount = parse_amount(values["amount"], self.options.decimal, self.options.thousands)
            values["amount"] = validate_amount(amount, values["currency"])
        except ValueError as error:
            return self._error(line, "amount", values["amount"], str(error))
        try:
            values["effective_at"] = parse_effective_at(values["effective_at"], self.timezone)
        except ValueError as error:
            return self._error(line, "effective_at", values["effective_at"], str(error))

        try:
            return RevenueUpdate.model_validate(values)
        except ValidationError as error:
            # Amount and currency are checked above, so the error is in another field.
            detail = error.errors(include_url=False)[0]
            location = str(detail["loc"][0]) if detail["loc"] else "account_external_id"
            index = self.columns.get(location)  # type: ignore[call-overload]
            raw = row[index].strip() if index is not None else ""
            reason = detail.get("ctx", {}).get("error", detail["msg"])
            message = f"{quote_value(raw)} is invalid: {reason}"
            return self._error(line, location, raw, message)

    def _error(self, line: int, csv_field: str, value: str, message: str) -> RevenueImportLineError:
        column = self.headers.get(csv_field, csv_field)  # type: ignore[call-overload]
        return RevenueImportLineError(
            line=line, column=column, value=quote_value(value), message=message
        )


async def import_revenue_csv(
    session: AsyncSession,
    tenant: Tenant,
    open_lines: Callable[[], Iterable[str]],
    options: CsvOptions,
) -> RevenueImportResult:
    """Apply the revenue updates of a CSV file in the caller's transaction.

    `open_lines` returns the file's lines from the start each time it is called. Unless
    `options.skip_invalid` is set, the file is read twice: once to check every line, so
    that a rejected file costs no database work, and once to apply it.

    Raises RevenueCsvInvalidError for a file that cannot be read at all (its header, its
    encoding, broken quoting), and RevenueCsvRejectedError for a file with an invalid line
    unless invalid lines are skipped. After either error the caller must roll back,
    because the file may have changed between the two readings.
    """
    if not options.skip_invalid:
        checked = await _read(_Reader(open_lines(), options, tenant.timezone), apply=None)
        if checked.rejected:
            raise _rejection(tenant, checked)

    async def apply(updates: list[RevenueUpdate]) -> RevenueUpdateResult:
        batch = RevenueUpdateBatch.model_construct(updates=updates)
        return await account_service.apply_revenue_updates(session, tenant, batch)

    result = await _read(_Reader(open_lines(), options, tenant.timezone), apply=apply)
    if result.rejected and not options.skip_invalid:
        raise _rejection(tenant, result)
    log.info(
        "revenue.csv_imported",
        tenant_id=str(tenant.id),
        lines=result.lines,
        accepted=result.accepted,
        rejected=result.rejected,
    )
    return result


async def _read(
    reader: _Reader,
    apply: Callable[[list[RevenueUpdate]], Awaitable[RevenueUpdateResult]] | None,
) -> RevenueImportResult:
    """Read every line, pass the valid ones to `apply` in chunks, and count the outcome."""
    result = RevenueImportResult(
        lines=0, accepted=0, rejected=0, created=0, updated=0, unchanged=0, accounts_created=0
    )
    chunk: list[RevenueUpdate] = []

    async def flush() -> None:
        if apply is None or not chunk:
            return
        applied = await apply(chunk)
        result.created += applied.created
        result.updated += applied.updated
        result.unchanged += applied.unchanged
        result.accounts_created += applied.accounts_created
        chunk.clear()

    for item in reader:
        result.lines += 1
        if isinstance(item, RevenueImportLineError):
            result.rejected += 1
            if len(result.errors) < MAX_LISTED_ERRORS:
                result.errors.append(item)
            continue
        result.accepted += 1
        if apply is not None:
            chunk.append(item)
        if len(chunk) == CHUNK_SIZE:
            await flush()
    await flush()
    return result


def _rejection(tenant: Tenant, result: RevenueImportResult) -> RevenueCsvRejectedError:
    first = result.errors[0]
    log.info(
        "revenue.csv_rejected",
        tenant_id=str(tenant.id),
        lines=result.lines,
        rejected=result.rejected,
        first_line=first.line,
    )
    return RevenueCsvRejectedError(
        f"{result.rejected} of {result.lines} lines are invalid, so nothing was imported. "
        f"First: {first.describe()}.",
        errors=[
            InvalidField(location=error.location(), message=error.message)
            for error in result.errors
        ],
        result=result,
    )
