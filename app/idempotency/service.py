"""Idempotency-Key: a retried write returns the first attempt's response instead of
applying the write again.

A request with a key runs in one transaction that:

1. takes a PostgreSQL advisory lock on the tenant and key without waiting. When another
   transaction, in any service process, has taken it, the request fails with 409;
2. looks up the saved response of the key. The same request gets it back (status and
   body) without the write running again; a different method, path or body gets 422;
3. otherwise runs the write and saves its response in the same transaction, so both are
   committed together or not at all.

Only successful responses are saved. A write that fails rolls back, key row included, so
retrying it with the same key runs it again.

Keys are kept for `KEY_RETENTION` at least. Each saved key deletes up to
`CLEANUP_BATCH_SIZE` of its tenant's older keys, so the table stays about one day of
keys per tenant without a periodic job.
"""

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency import repository
from app.idempotency.errors import IdempotencyKeyInFlightError, IdempotencyKeyReusedError
from app.idempotency.models import IdempotencyKey

log = structlog.get_logger()

KEY_RETENTION = timedelta(hours=24)
CLEANUP_BATCH_SIZE = 100

ResultT = TypeVar("ResultT", bound=BaseModel)


@dataclass(frozen=True)
class IdempotentRequest:
    """The `Idempotency-Key` of a request, and the SHA-256 digest of its method, path and
    body, which distinguishes a retry from another request with the same key."""

    key: str
    request_hash: bytes


@dataclass(frozen=True)
class IdempotentOutcome(Generic[ResultT]):
    """The response of a write: its status code, body, and whether it was saved earlier."""

    status_code: int
    result: ResultT
    replayed: bool


def advisory_lock_id(tenant_id: uuid.UUID, key: str) -> int:
    """Return the signed 64-bit advisory lock id of a tenant's key.

    Ids from different keys collide with probability about 2**-64; a collision only makes
    one of two concurrent requests fail with 409.
    """
    digest = hashlib.sha256(f"idempotency:{tenant_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def run_once(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    request: IdempotentRequest,
    operation: Callable[[], Awaitable[ResultT]],
    *,
    result_type: type[ResultT],
    status_code: int,
) -> IdempotentOutcome[ResultT]:
    """Run `operation` unless `request.key` already has a saved response; see the module
    docstring for the rules."""
    if not await repository.try_lock_key(session, advisory_lock_id(tenant_id, request.key)):
        raise IdempotencyKeyInFlightError(
            "A request with this Idempotency-Key is still in progress; retry after it "
            "finishes to get its response.",
            headers={"Retry-After": "1"},
        )

    saved = await repository.get_key(session, tenant_id, request.key)
    if saved is not None:
        if saved.request_hash != request.request_hash:
            raise IdempotencyKeyReusedError(
                "This Idempotency-Key was already used for a different request (another "
                "method, path or body); send a new key for a new request."
            )
        log.info("idempotency.replayed", tenant_id=str(tenant_id))
        return IdempotentOutcome(
            status_code=saved.status_code,
            result=result_type.model_validate(saved.response_body),
            replayed=True,
        )

    result = await operation()

    await repository.add_key(
        session,
        IdempotencyKey(
            tenant_id=tenant_id,
            key=request.key,
            request_hash=request.request_hash,
            status_code=status_code,
            response_body=result.model_dump(mode="json"),
        ),
    )
    deleted = await repository.delete_expired_keys(
        session, tenant_id, retention=KEY_RETENTION, batch_size=CLEANUP_BATCH_SIZE
    )
    if deleted:
        log.info("idempotency.expired_deleted", tenant_id=str(tenant_id), count=deleted)
    return IdempotentOutcome(status_code=status_code, result=result, replayed=False)
