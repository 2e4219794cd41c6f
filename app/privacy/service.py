"""Deletion of responses and erasure of a person's data, each recorded in the audit log.

The audit log contains no erased data: an erasure is recorded with the SHA-256 digest of the
lower-cased email, and a deletion with the response's source and id.
"""

import hashlib
import uuid
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.contacts import service as contact_service
from app.privacy import repository
from app.privacy.models import AuditAction, AuditEvent
from app.privacy.schemas import AuditEventRead, ErasureResult
from app.responses import service as response_service
from app.responses.schemas import ResponseIn
from app.schemas import Page, decode_cursor, encode_cursor

log = structlog.get_logger()


def email_digest(email: str) -> bytes:
    return hashlib.sha256(email.strip().lower().encode()).digest()


async def delete_response(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    source: str,
    response_id: str,
    *,
    actor_key_id: uuid.UUID | None,
) -> None:
    """Delete the response and record it; every report computed afterwards leaves it out."""
    await response_service.delete_response(session, tenant_id, source, response_id)
    await repository.add_audit_event(
        session,
        AuditEvent(
            tenant_id=tenant_id,
            action=AuditAction.RESPONSE_DELETED,
            source=source,
            response_id=response_id,
            counts={"responses": 1},
            actor_key_id=actor_key_id,
        ),
    )


async def erase_person(
    session: AsyncSession, tenant_id: uuid.UUID, email: str, *, actor_key_id: uuid.UUID | None
) -> ErasureResult:
    """Remove the person's email, comments, raw webhook payloads and contact links.

    Their responses keep score and account, so coverage does not change. Data that arrives
    after the erasure, such as a newer version of a response, is stored as usual.
    """
    # Taken before any row is changed: deleting the contact matches responses again,
    # which needs the lock exclusively.
    await response_service.lock_account_resolution(session, tenant_id)
    erased = await response_service.erase_email(session, tenant_id, email)
    deliveries = await repository.erase_deliveries(
        session, tenant_id, responses=erased, email=email
    )
    contact_links = await contact_service.delete_contact(session, tenant_id, email)

    counts = {
        "responses": len(erased),
        "webhook_deliveries": deliveries,
        "contact_links": contact_links,
    }
    event = await repository.add_audit_event(
        session,
        AuditEvent(
            tenant_id=tenant_id,
            action=AuditAction.PERSON_ERASED,
            subject_hash=email_digest(email),
            counts=counts,
            actor_key_id=actor_key_id,
        ),
    )
    log.info("person.erased", tenant_id=str(tenant_id), audit_event_id=event.id, **counts)
    return ErasureResult(**counts, audit_event_id=event.id)


async def list_audit_events(
    session: AsyncSession, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[AuditEventRead]:
    after_id = decode_cursor(cursor, int) if cursor else None
    rows = await repository.list_audit_events(
        session, tenant_id, after_id=after_id, limit=limit + 1
    )
    items = [
        AuditEventRead(
            id=event.id,
            action=event.action,
            subject_sha256=event.subject_hash.hex() if event.subject_hash else None,
            source=event.source,
            response_id=event.response_id,
            counts=event.counts,
            actor_key_id=event.actor_key_id,
            object_id=event.object_id,
            details=event.details,
            created_at=event.created_at,
        )
        for event in rows[:limit]
    ]
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[AuditEventRead](items=items, next_cursor=next_cursor)


async def without_erased_data(
    session: AsyncSession, tenant_id: uuid.UUID, response: ResponseIn, received_at: datetime
) -> ResponseIn:
    """Drop the email and comment of a response received before its respondent was erased.

    A thin payload's response is fetched after the delivery arrived. When the person asked
    for erasure in between, the fetched copy must not bring their data back.
    """
    if response.email is None:
        return response
    if not await repository.erased_since(
        session, tenant_id, email_digest(response.email), received_at
    ):
        return response
    log.info("person.erased_data_dropped", tenant_id=str(tenant_id))
    return response.model_copy(update={"email": None, "comment": None})
