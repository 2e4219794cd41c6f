"""Tenant-supplied exchange rates, and the error a report raises when one is missing.

A rate converts revenue in `currency` into the reporting currency it was quoted in. Reports
convert in SQL (`app.reports.queries.revenue_at_end_cte`), using the rate in force at the
period's revenue instant.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidField, UnprocessableError
from app.fx import repository
from app.fx.errors import MissingFxRateError, ReportingCurrencyRateError
from app.fx.models import FxRate
from app.fx.schemas import FxRateBatch, FxRateRead, FxRateUpdateResult
from app.schemas import Page, check_timestamp_range, decode_cursor, encode_cursor
from app.tenancy.models import Tenant

log = structlog.get_logger()

# The SQLSTATE that the database function `revcov_missing_fx_rate` raises.
MISSING_RATE_SQLSTATE = "RVFX1"


def _rate_read(rate: FxRate) -> FxRateRead:
    return FxRateRead(
        currency=rate.currency,
        reporting_currency=rate.quote_currency,
        rate=format(rate.rate.normalize(), "f"),
        effective_at=rate.effective_at,
    )


async def put_rates(
    session: AsyncSession, tenant: Tenant, batch: FxRateBatch
) -> FxRateUpdateResult:
    """Store a batch of rates quoted in the tenant's reporting currency, all or nothing.

    Rates for the same currency and `effective_at` are merged, the last one winning.
    Raises ReportingCurrencyRateError for a rate of the reporting currency itself.
    """
    reporting = await repository.lock_reporting_currency(session, tenant.id)
    errors = [
        InvalidField(
            location=f"body.rates[{index}].currency",
            message=f"{rate.currency} is the reporting currency, whose amounts need no rate",
        )
        for index, rate in enumerate(batch.rates)
        if rate.currency == reporting
    ]
    if errors:
        raise ReportingCurrencyRateError(
            f"{len(errors)} rate(s) are for the reporting currency {reporting}; "
            "send rates only for other currencies. Nothing was written.",
            errors=errors,
        )

    latest: dict[tuple[str, datetime], Decimal] = {}
    for rate in batch.rates:
        latest[(rate.currency, rate.effective_at)] = rate.rate
    records = [(currency, effective_at, rate) for (currency, effective_at), rate in latest.items()]
    created, updated = await repository.upsert_rates(session, tenant.id, reporting, records)

    result = FxRateUpdateResult(
        created=created, updated=updated, unchanged=len(records) - created - updated
    )
    log.info("fx_rates.updated", tenant_id=str(tenant.id), **result.model_dump())
    return result


def _decode_rate_cursor(cursor: str) -> tuple[str, str, datetime]:
    quote_currency, _, rest = decode_cursor(cursor, str).partition("|")
    currency, _, effective_at = rest.partition("|")
    try:
        # The range check rejects instants that PostgreSQL cannot compare, as in requests.
        return quote_currency, currency, check_timestamp_range(datetime.fromisoformat(effective_at))
    except ValueError:
        raise UnprocessableError(
            f"Invalid cursor {cursor[:40]!r}; pass the `next_cursor` value of the previous page.",
            errors=[InvalidField(location="query.cursor", message="not a cursor of this list")],
        ) from None


async def list_rates(
    session: AsyncSession, tenant: Tenant, *, limit: int, cursor: str | None
) -> Page[FxRateRead]:
    after = _decode_rate_cursor(cursor) if cursor else None
    rates = await repository.list_rates(session, tenant.id, after=after, limit=limit + 1)
    items = [_rate_read(rate) for rate in rates[:limit]]
    next_cursor = None
    if len(rates) > limit:
        last = rates[limit - 1]
        next_cursor = encode_cursor(
            f"{last.quote_currency}|{last.currency}|{last.effective_at.isoformat()}"
        )
    return Page[FxRateRead](items=items, next_cursor=next_cursor)


@contextmanager
def missing_rate_as_error() -> Iterator[None]:
    """Turn the database error of a report statement that met a missing rate into
    MissingFxRateError, which names the currency and the revenue instant."""
    try:
        yield
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != MISSING_RATE_SQLSTATE:
            raise
        # The asyncpg error behind SQLAlchemy's wrapper carries the function's DETAIL and HINT.
        cause = error.orig.__cause__ if error.orig is not None else None
        currency = getattr(cause, "detail", None)
        instant = getattr(cause, "hint", None)
        if currency is None or instant is None:
            raise MissingFxRateError(
                "an exchange rate needed by this report is missing; PUT /v1/fx-rates."
            ) from None
        raise MissingFxRateError(
            f"no {currency} rate in force at {instant}; PUT /v1/fx-rates with a {currency} "
            "rate effective at or before that instant."
        ) from None
