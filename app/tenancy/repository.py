import uuid
from typing import Any

from sqlalchemy import Select, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.tenancy.models import ApiKey, ShareToken, Tenant


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def lock_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    """Load the tenant row locked for update until the transaction ends.

    The lock is the one an UPDATE of the row takes (FOR NO KEY UPDATE), so inserts of
    rows that reference the tenant, which take FOR KEY SHARE, do not wait for it.
    """
    statement = (
        select(Tenant)
        .where(Tenant.id == tenant_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def lift_statement_timeout(session: AsyncSession) -> None:
    """Remove the statement timeout until the transaction ends."""
    await session.execute(text("SET LOCAL statement_timeout = 0"))


async def any_tenant_exists(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(exists().select_from(Tenant))))


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    """Return every tenant, oldest first: an operator's listing across tenants."""
    statement = select(Tenant).order_by(Tenant.created_at, Tenant.id)
    return list((await session.scalars(statement)).all())


async def add_tenant(session: AsyncSession, tenant: Tenant) -> None:
    session.add(tenant)
    await session.flush()


async def add_api_key(session: AsyncSession, api_key: ApiKey) -> None:
    session.add(api_key)
    await session.flush()


async def find_active_key(
    session: AsyncSession, tenant_id: uuid.UUID, key_hash: bytes
) -> tuple[ApiKey, Tenant] | None:
    statement = (
        select(ApiKey, Tenant)
        .join(Tenant, ApiKey.tenant_id == Tenant.id)
        .where(
            ApiKey.tenant_id == tenant_id,
            ApiKey.key_hash == key_hash,
            ApiKey.revoked_at.is_(None),
        )
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row[0], row[1])


def _api_keys(tenant_id: uuid.UUID) -> Select[ApiKey]:
    return select(ApiKey).where(ApiKey.tenant_id == tenant_id)


async def list_api_keys(session: AsyncSession, tenant_id: uuid.UUID) -> list[ApiKey]:
    statement = _api_keys(tenant_id).order_by(ApiKey.created_at, ApiKey.id)
    return list((await session.scalars(statement)).all())


async def get_api_key(
    session: AsyncSession, tenant_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey | None:
    return await session.scalar(_api_keys(tenant_id).where(ApiKey.id == key_id))


async def lock_active_admin_keys(session: AsyncSession, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    """Return the ids of the tenant's active keys with the `admin` scope, locked for update
    until the transaction ends."""
    statement = (
        select(ApiKey.id)
        .where(
            ApiKey.tenant_id == tenant_id,
            ApiKey.revoked_at.is_(None),
            ApiKey.scopes.contains(["admin"]),
        )
        .order_by(ApiKey.id)
        .with_for_update()
    )
    return list((await session.scalars(statement)).all())


async def revoke_api_key(session: AsyncSession, api_key: ApiKey) -> ApiKey:
    statement = (
        update(ApiKey)
        .where(ApiKey.tenant_id == api_key.tenant_id, ApiKey.id == api_key.id)
        .values(revoked_at=func.now())
        .returning(ApiKey)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def update_tenant(session: AsyncSession, tenant: Tenant, values: dict[str, Any]) -> Tenant:
    statement = (
        update(Tenant)
        .where(Tenant.id == tenant.id)
        .values(**values, updated_at=func.now())
        .returning(Tenant)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def add_share_token(session: AsyncSession, share_token: ShareToken) -> None:
    session.add(share_token)
    await session.flush()


async def find_active_share_token(
    session: AsyncSession, tenant_id: uuid.UUID, token_hash: bytes
) -> tuple[ShareToken, Tenant] | None:
    statement = (
        select(ShareToken, Tenant)
        .join(Tenant, ShareToken.tenant_id == Tenant.id)
        .where(
            ShareToken.tenant_id == tenant_id,
            ShareToken.token_hash == token_hash,
            ShareToken.revoked_at.is_(None),
        )
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row[0], row[1])


def _share_tokens(tenant_id: uuid.UUID) -> Select[ShareToken]:
    return select(ShareToken).where(ShareToken.tenant_id == tenant_id)


async def list_share_tokens(session: AsyncSession, tenant_id: uuid.UUID) -> list[ShareToken]:
    statement = _share_tokens(tenant_id).order_by(ShareToken.created_at, ShareToken.id)
    return list((await session.scalars(statement)).all())


async def get_share_token(
    session: AsyncSession, tenant_id: uuid.UUID, token_id: uuid.UUID
) -> ShareToken | None:
    return await session.scalar(_share_tokens(tenant_id).where(ShareToken.id == token_id))


async def revoke_share_token(session: AsyncSession, share_token: ShareToken) -> ShareToken:
    statement = (
        update(ShareToken)
        .where(ShareToken.tenant_id == share_token.tenant_id, ShareToken.id == share_token.id)
        .values(revoked_at=func.now())
        .returning(ShareToken)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()
