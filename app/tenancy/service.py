"""Tenants, their API keys and their share tokens.

A key reads `rcv_<tenant id as 32 hex digits>_<43 random characters>`. The tenant id in it
lets every lookup stay within one tenant; the random part carries 256 bits, so the stored
SHA-256 digest cannot be reversed by guessing and needs no salt or slow hash. A share token
has the same form with the scheme `rcs`, so it never authenticates as an API key.
"""

import hashlib
import secrets
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidField
from app.privacy import repository as audit_repository
from app.privacy.models import AuditAction, AuditEvent
from app.tenancy import repository
from app.tenancy.errors import (
    ApiKeyNotFoundError,
    InvalidApiKeyError,
    InvalidShareTokenError,
    InvalidThresholdsError,
    LastAdminKeyError,
    ShareTokenNotFoundError,
)
from app.tenancy.models import API_KEY_SCOPES, ApiKey, ShareToken, Tenant
from app.tenancy.schemas import ApiKeyCreate, ShareTokenCreate, TenantRead, TenantUpdate

log = structlog.get_logger()

KEY_SCHEME = "rcv"
SHARE_TOKEN_SCHEME = "rcs"
# The tenant made from REVCOV_BOOTSTRAP_API_KEY has a fixed id, because that key may have any
# shape and so cannot carry the tenant id; keys without one are checked against this tenant.
BOOTSTRAP_TENANT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
# How much of a key is kept readable, to tell keys apart in listings and logs.
KEY_PREFIX_LENGTH = len(KEY_SCHEME) + 1 + 32 + 1 + 6


def generate_api_key(tenant_id: uuid.UUID, scheme: str = KEY_SCHEME) -> str:
    return f"{scheme}_{tenant_id.hex}_{secrets.token_urlsafe(32)}"


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def tenant_id_from_key(key: str, scheme: str = KEY_SCHEME) -> uuid.UUID | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != scheme or len(parts[1]) != 32:
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
            scopes=list(API_KEY_SCOPES),
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


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await repository.get_tenant(session, tenant_id)


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return await repository.list_tenants(session)


async def authenticate(session: AsyncSession, key: str) -> tuple[ApiKey, Tenant]:
    """Return the active key and its tenant, or raise InvalidApiKeyError.

    The lookup runs on every request, so a revoked key fails from the moment the revocation
    commits.
    """
    tenant_id = tenant_id_from_key(key) or BOOTSTRAP_TENANT_ID
    found = await repository.find_active_key(session, tenant_id, hash_api_key(key))
    if found is None:
        raise InvalidApiKeyError(
            "The API key is invalid or revoked; send `Authorization: Bearer <key>` "
            "with a key from `revcov tenants create` or `POST /v1/api-keys`.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return found


async def list_api_keys(session: AsyncSession, tenant: Tenant) -> list[ApiKey]:
    return await repository.list_api_keys(session, tenant.id)


async def create_api_key(
    session: AsyncSession,
    tenant: Tenant,
    request: ApiKeyCreate,
    *,
    actor_key_id: uuid.UUID | None,
) -> tuple[ApiKey, str]:
    """Create an API key and record it in the audit log; return it with the key in plain
    text, which is not stored. `actor_key_id` is None for a key that an operator created
    with the command line."""
    key = generate_api_key(tenant.id)
    api_key = ApiKey(
        tenant_id=tenant.id,
        id=uuid.uuid4(),
        key_hash=hash_api_key(key),
        prefix=key[:KEY_PREFIX_LENGTH],
        name=request.name,
        # Stored in a fixed order, so listings read alike whatever order the request used.
        scopes=[scope for scope in API_KEY_SCOPES if scope in request.scopes],
    )
    await repository.add_api_key(session, api_key)
    await session.refresh(api_key)
    await _audit(
        session,
        tenant,
        AuditAction.API_KEY_CREATED,
        actor_key_id,
        object_id=str(api_key.id),
        details={"name": api_key.name, "scopes": api_key.scopes},
    )
    log.info(
        "api_key.created", tenant_id=str(tenant.id), key_id=str(api_key.id), scopes=api_key.scopes
    )
    return api_key, key


async def _audit(
    session: AsyncSession,
    tenant: Tenant,
    action: AuditAction,
    actor_key_id: uuid.UUID | None,
    *,
    details: dict[str, Any],
    object_id: str | None = None,
) -> None:
    """Record an administrative action on the tenant in the audit log."""
    await audit_repository.add_audit_event(
        session,
        AuditEvent(
            tenant_id=tenant.id,
            action=action,
            actor_key_id=actor_key_id,
            object_id=object_id,
            details=details,
        ),
    )


async def revoke_api_key(
    session: AsyncSession, tenant: Tenant, key_id: uuid.UUID, *, actor_key_id: uuid.UUID
) -> ApiKey:
    """Revoke a key, unless it is the tenant's last active key with the `admin` scope, and
    record the revocation in the audit log.

    Revoking an already revoked key changes nothing, records nothing and returns the key.
    """
    # Locking the active admin keys makes concurrent revocations take turns, so two of them
    # cannot each count the other's key as the admin key that remains.
    admin_key_ids = await repository.lock_active_admin_keys(session, tenant.id)
    api_key = await repository.get_api_key(session, tenant.id, key_id)
    if api_key is None:
        raise ApiKeyNotFoundError(f"API key {key_id} not found; list the keys at /v1/api-keys.")
    if api_key.revoked_at is not None:
        return api_key

    if admin_key_ids == [api_key.id]:
        raise LastAdminKeyError(
            f"API key {key_id} is the last active key with the admin scope, and without one "
            "nobody could manage the tenant; create another admin key first."
        )

    revoked = await repository.revoke_api_key(session, api_key)
    await _audit(
        session,
        tenant,
        AuditAction.API_KEY_REVOKED,
        actor_key_id,
        object_id=str(key_id),
        details={"name": revoked.name},
    )
    log.info("api_key.revoked", tenant_id=str(tenant.id), key_id=str(key_id))
    return revoked


async def authenticate_share_token(session: AsyncSession, token: str) -> Tenant:
    """Return the tenant of an active share token, or raise InvalidShareTokenError.

    A revoked token fails from the moment the revocation commits.
    """
    tenant_id = tenant_id_from_key(token, SHARE_TOKEN_SCHEME)
    found = None
    if tenant_id is not None:
        found = await repository.find_active_share_token(session, tenant_id, hash_api_key(token))
    if found is None:
        raise InvalidShareTokenError(
            "The share token is invalid or revoked; create one through POST /v1/share-tokens."
        )
    return found[1]


async def list_share_tokens(session: AsyncSession, tenant: Tenant) -> list[ShareToken]:
    return await repository.list_share_tokens(session, tenant.id)


async def create_share_token(
    session: AsyncSession, tenant: Tenant, request: ShareTokenCreate, *, actor_key_id: uuid.UUID
) -> tuple[ShareToken, str]:
    """Create a share token; return it with the token in plain text, which is not stored."""
    token = generate_api_key(tenant.id, SHARE_TOKEN_SCHEME)
    share_token = ShareToken(
        tenant_id=tenant.id,
        id=uuid.uuid4(),
        token_hash=hash_api_key(token),
        prefix=token[:KEY_PREFIX_LENGTH],
        name=request.name,
    )
    await repository.add_share_token(session, share_token)
    await session.refresh(share_token)
    await _audit(
        session,
        tenant,
        AuditAction.SHARE_TOKEN_CREATED,
        actor_key_id,
        object_id=str(share_token.id),
        details={"name": share_token.name},
    )
    log.info("share_token.created", tenant_id=str(tenant.id), token_id=str(share_token.id))
    return share_token, token


async def revoke_share_token(
    session: AsyncSession, tenant: Tenant, token_id: uuid.UUID, *, actor_key_id: uuid.UUID
) -> ShareToken:
    """Revoke a share token; revoking a revoked token changes nothing and returns it."""
    share_token = await repository.get_share_token(session, tenant.id, token_id)
    if share_token is None:
        raise ShareTokenNotFoundError(
            f"Share token {token_id} not found; list the tokens at /v1/share-tokens."
        )
    if share_token.revoked_at is not None:
        return share_token

    revoked = await repository.revoke_share_token(session, share_token)
    await _audit(
        session,
        tenant,
        AuditAction.SHARE_TOKEN_REVOKED,
        actor_key_id,
        object_id=str(token_id),
        details={"name": revoked.name},
    )
    log.info("share_token.revoked", tenant_id=str(tenant.id), token_id=str(token_id))
    return revoked


async def update_settings(
    session: AsyncSession, tenant: Tenant, changes: TenantUpdate, *, actor_key_id: uuid.UUID
) -> Tenant:
    """Apply the changed settings and record the old and new values in the audit log."""
    values: dict[str, Any] = changes.model_dump(exclude_unset=True, exclude_none=True)
    if not values:
        return tenant
    # Concurrent updates apply one after the other, so the checks and the audit log's
    # old values read the row as the previous update left it. Writes of exchange rates
    # hold a share lock on this row, so no rate can be stored as quoted in the old
    # currency after a change of `reporting_currency`. Stored rates keep the currency
    # they were quoted in, and reports use only those quoted in the new one.
    tenant = await repository.lock_tenant(session, tenant.id)
    _check_account_nps_thresholds(tenant, values)
    if "revenue_tiers" in values:
        # JSONB has no exact decimal type, so each bound is stored as a decimal string.
        values["revenue_tiers"] = [
            {"label": tier["label"], "min_revenue": format(tier["min_revenue"], "f")}
            for tier in values["revenue_tiers"]
        ]
    if _moves_quarter_grid(tenant, values):
        # A trigger rebuilds the tenant's quarter state from all its responses in this
        # transaction, which on a large tenant takes longer than the statement timeout.
        await repository.lift_statement_timeout(session)
    before = TenantRead.model_validate(tenant).model_dump(mode="json")
    updated = await repository.update_tenant(session, tenant, values)
    after = TenantRead.model_validate(updated).model_dump(mode="json")
    fields = sorted(values)
    await _audit(
        session,
        tenant,
        AuditAction.TENANT_UPDATED,
        actor_key_id,
        details={
            "fields": fields,
            "from": {field: before[field] for field in fields},
            "to": {field: after[field] for field in fields},
        },
    )
    log.info("tenant.updated", tenant_id=str(tenant.id), fields=fields)
    return updated


def _moves_quarter_grid(tenant: Tenant, values: dict[str, Any]) -> bool:
    """Return whether the change moves the tenant's quarter boundaries."""
    timezone: str = values.get("timezone", tenant.timezone)
    start_month: int = values.get("fiscal_year_start_month", tenant.fiscal_year_start_month)
    return timezone != tenant.timezone or start_month != tenant.fiscal_year_start_month


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
