import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyKey


async def try_lock_key(session: AsyncSession, lock_id: int) -> bool:
    """Take the transaction-level advisory lock `lock_id` without waiting; return whether
    it was taken. PostgreSQL releases it at commit or rollback, and when the connection
    drops, so a crashed request never leaves its key locked."""
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(lock_id))))


async def get_key(session: AsyncSession, tenant_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    statement = select(IdempotencyKey).where(
        IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key
    )
    return await session.scalar(statement)


async def add_key(session: AsyncSession, saved: IdempotencyKey) -> None:
    session.add(saved)
    await session.flush()


async def delete_expired_keys(
    session: AsyncSession, tenant_id: uuid.UUID, *, retention: timedelta, batch_size: int
) -> int:
    """Delete up to `batch_size` of the tenant's keys older than `retention`; return how
    many. Rows another transaction has locked are skipped, so the delete never waits
    for their locks."""
    expired = (
        select(IdempotencyKey.key)
        .where(
            IdempotencyKey.tenant_id == tenant_id,
            IdempotencyKey.created_at < func.now() - retention,
        )
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = delete(IdempotencyKey).where(
        IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key.in_(expired)
    )
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)
