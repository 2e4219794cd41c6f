import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import INSERTED
from app.fx.models import FxRate
from app.tenancy.models import Tenant


def _rates(tenant_id: uuid.UUID) -> Select[FxRate]:
    return select(FxRate).where(FxRate.tenant_id == tenant_id)


async def lock_reporting_currency(session: AsyncSession, tenant_id: uuid.UUID) -> str:
    """Return the tenant's reporting currency, holding a share lock on the tenant row until
    the transaction ends, so the currency cannot change while rates quoted in it are written."""
    statement = (
        select(Tenant.reporting_currency).where(Tenant.id == tenant_id).with_for_update(read=True)
    )
    return (await session.execute(statement)).scalar_one()


async def upsert_rates(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    quote_currency: str,
    records: Sequence[tuple[str, datetime, Decimal]],
) -> tuple[int, int]:
    """Insert or update (currency, effective_at, rate) records; return (created, updated).

    A record stored with the same rate is neither, so it is left out of both counts.
    """
    if not records:
        return 0, 0
    # Rows in key order, so that concurrent uploads of the same rates lock them in one
    # order and do not deadlock.
    records = sorted(records, key=lambda record: (record[0], record[1]))
    inserts = insert(FxRate).values(
        [
            {
                "tenant_id": tenant_id,
                "quote_currency": quote_currency,
                "currency": currency,
                "effective_at": effective_at,
                "rate": rate,
            }
            for currency, effective_at, rate in records
        ]
    )
    statement = inserts.on_conflict_do_update(
        index_elements=["tenant_id", "quote_currency", "currency", "effective_at"],
        set_={"rate": inserts.excluded.rate, "recorded_at": func.now()},
        where=FxRate.rate != inserts.excluded.rate,
    ).returning(INSERTED)
    flags = (await session.execute(statement)).scalars().all()
    created = sum(1 for inserted in flags if inserted)
    return created, len(flags) - created


async def list_rates(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    after: tuple[str, str, datetime] | None,
    limit: int,
) -> Sequence[FxRate]:
    """List rates by reporting currency, currency and `effective_at`, after the key `after`."""
    key = tuple_(FxRate.quote_currency, FxRate.currency, FxRate.effective_at)
    statement = _rates(tenant_id).order_by(
        FxRate.quote_currency, FxRate.currency, FxRate.effective_at
    )
    if after is not None:
        statement = statement.where(key > tuple_(*after))
    return (await session.scalars(statement.limit(limit))).all()
