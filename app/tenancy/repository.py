import uuid
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.tenancy.models import ApiKey, Tenant


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def lock_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    """Load the tenant row locked for update until the transaction ends."""
    statement = (
        select(Tenant)
        .where(Tenant.id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def any_tenant_exists(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(exists().select_from(Tenant))))


async def add_tenant(session: AsyncSession, tenant: Tenant) -> None:
    session.add(tenant)
    await session.flush()


async def add_api_key(session: AsyncSession, api_key: ApiKey) -> None:
    session.add(api_key)
    await session.flush()


async def find_tenant_by_key_hash(
    session: AsyncSession, tenant_id: uuid.UUID, key_hash: bytes
) -> Tenant | None:
    statement = (
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(
            ApiKey.tenant_id == tenant_id,
            ApiKey.key_hash == key_hash,
            ApiKey.revoked_at.is_(None),
        )
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def update_tenant(session: AsyncSession, tenant: Tenant, values: dict[str, Any]) -> Tenant:
    statement = (
        update(Tenant)
        .where(Tenant.id == tenant.id)
        .values(**values, updated_at=func.now())
        .returning(Tenant)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()
