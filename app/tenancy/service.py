"""Tenants and their API keys.

A key reads `rcv_<tenant id as 32 hex digits>_<43 random characters>`. The tenant id in it
lets every lookup stay within one tenant; the random part carries 256 bits, so the stored
SHA-256 digest cannot be reversed by guessing and needs no salt or slow hash.
"""

import hashlib
import secrets
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidField
from app.tenancy import repository
from app.tenancy.errors import InvalidApiKeyError, InvalidThresholdsError
from app.tenancy.models import ApiKey, Tenant
from app.tenancy.schemas import TenantUpdate

log = structlog.get_logger()

KEY_SCHEME = "rcv"
# The tenant made from REVCOV_BOOTSTRAP_API_KEY has a fixed id, because that key may have any
# shape and so cannot carry the tenant id; keys without one are checked against this tenant.
BOOTSTRAP_TENANT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
# How much of a key is kept readable, to tell keys apart in listings and logs.
KEY_PREFIX_LENGTH = len(KEY_SCHEME) + 1 + 32 + 1 + 6


def generate_api_key(tenant_id: uuid.UUID) -> str:
    return f"{KEY_SCHEME}_{tenant_id.hex}_{secrets.token_urlsafe(32)}"


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def tenant_id_from_key(key: str) -> uuid.UUID | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != 32:
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


async def create_tenant(
    session: AsyncSession,
    name: str,
    *,
    tenant_id: uuid.UUID | None = None,
    api_key: str | None = None,
) -> tuple[Tenant, str]:
    """Create a tenant and its first API key; return both, the key in plain text."""
    tenant_id = tenant_id or uuid.uuid4()
    key = api_key if api_key is not None else generate_api_key(tenant_id)
    tenant = Tenant(id=tenant_id, name=name)
    await repository.add_tenant(session, tenant)
    await repository.add_api_key(
        session,
        ApiKey(
            tenant_id=tenant_id,
            id=uuid.uuid4(),
            key_hash=hash_api_key(key),
            prefix=key[:KEY_PREFIX_LENGTH],
            name="initial",
        ),
    )
    log.info("tenant.created", tenant_id=str(tenant_id))
    return tenant, key


async def create_bootstrap_tenant(session: AsyncSession, api_key: str) -> Tenant | None:
    """Create tenant `default` with `api_key` when no tenant exists yet; else do nothing."""
    if await repository.any_tenant_exists(session):
        return None
    tenant, _ = await create_tenant(
        session, "default", tenant_id=BOOTSTRAP_TENANT_ID, api_key=api_key
    )
    return tenant


async def authenticate(session: AsyncSession, key: str) -> Tenant:
    tenant_id = tenant_id_from_key(key) or BOOTSTRAP_TENANT_ID
    tenant = await repository.find_tenant_by_key_hash(session, tenant_id, hash_api_key(key))
    if tenant is None:
        raise InvalidApiKeyError(
            "The API key is invalid or revoked; send `Authorization: Bearer <key>` "
            "with a key from `revcov tenants create`.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return tenant


async def update_settings(session: AsyncSession, tenant: Tenant, changes: TenantUpdate) -> Tenant:
    values: dict[str, Any] = changes.model_dump(exclude_unset=True, exclude_none=True)
    if values.get("reporting_currency") is not None:
        # Writes of exchange rates hold a share lock on this row, so no rate can be stored
        # as quoted in the old currency after this update. Stored rates keep the currency
        # they were quoted in, and reports use only those quoted in the new one.
        tenant = await repository.lock_tenant(session, tenant.id)
    if not values:
        return tenant
    _check_account_nps_thresholds(tenant, values)
    if "revenue_tiers" in values:
        # JSONB has no exact decimal type, so each bound is stored as a decimal string.
        values["revenue_tiers"] = [
            {"label": tier["label"], "min_revenue": format(tier["min_revenue"], "f")}
            for tier in values["revenue_tiers"]
        ]
    updated = await repository.update_tenant(session, tenant, values)
    log.info("tenant.updated", tenant_id=str(tenant.id), fields=sorted(values))
    return updated


def _check_account_nps_thresholds(tenant: Tenant, values: dict[str, Any]) -> None:
    safe_above = values.get("account_nps_safe_above", tenant.account_nps_safe_above)
    at_risk_below = values.get("account_nps_at_risk_below", tenant.account_nps_at_risk_below)
    if at_risk_below <= safe_above:
        return
    message = (
        f"account_nps_at_risk_below ({at_risk_below}) must not exceed "
        f"account_nps_safe_above ({safe_above})"
    )
    raise InvalidThresholdsError(
        f"Invalid thresholds: {message}.",
        errors=[InvalidField(location="body.account_nps_at_risk_below", message=message)],
    )
