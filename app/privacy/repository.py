import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote, quote_plus

from sqlalchemy import Text, exists, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.privacy.models import AuditAction, AuditEvent
from app.webhooks.models import WebhookDelivery


async def add_audit_event(session: AsyncSession, event: AuditEvent) -> AuditEvent:
    session.add(event)
    await session.flush()
    await session.refresh(event)
    return event


async def list_audit_events(
    session: AsyncSession, tenant_id: uuid.UUID, *, after_id: int | None, limit: int
) -> Sequence[AuditEvent]:
    statement = (
        select(AuditEvent)
        .where(AuditEvent.tenant_id == tenant_id)
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(AuditEvent.id > after_id)
    return (await session.scalars(statement)).all()


def _mention_pattern(email: str) -> str:
    """Build a PostgreSQL regular expression that finds the lower-cased email in a body.

    The plain form must not be part of a longer address. Encoded forms (percent-encoded as
    in form bodies and URLs, or with a JSON-escaped @) are matched wherever they occur,
    because the character before them can be part of an escape; such a search may also
    erase a delivery that names a longer address ending in this one.
    """
    plain = rf"(?<![a-z0-9._%+-]){re.escape(email)}(?![a-z0-9_-]|\.[a-z0-9])"
    encoded = {
        email.replace("@", "%40"),
        quote_plus(email).lower(),
        quote(email, safe="").lower(),
        # A JSON-escaped @; the escape encoding of the body doubles its backslash.
        email.replace("@", "\\\\u0040"),
    }
    alternatives = "|".join(re.escape(form) for form in sorted(encoded))
    return rf"{plain}|(?:{alternatives})(?![a-z0-9_-]|\.[a-z0-9])"


async def erase_deliveries(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    responses: Sequence[tuple[str, str]],
    email: str,
) -> int:
    """Empty the body and headers of deliveries that carried these responses or mention the
    email; return the number of deliveries changed.

    Bodies are searched so that deliveries which could not be mapped to a response, and
    older versions that carried another email, are erased too. The search lower-cases
    the body byte by byte, so it finds an email written in ASCII only.
    """
    # NOTE: the search reads every stored body of the tenant, so an erasure takes time in
    # proportion to the size of its webhook deliveries.
    carried = tuple_(WebhookDelivery.source, WebhookDelivery.response_id).in_(responses)
    body_text = func.lower(func.encode(WebhookDelivery.body, "escape"))
    pattern = _mention_pattern(email.lower())
    # A JSON body may escape any character of the address (`\u002e` for a dot), so its
    # parsed form is searched too. `revcov_json_text` is NULL for other bodies.
    # NOTE: it is NULL too for a body nested too deeply for jsonb, so an address escaped
    # inside such a body is not found.
    json_text = func.lower(func.revcov_json_text(WebhookDelivery.body, type_=Text))
    mentioned = or_(body_text.regexp_match(pattern), json_text.regexp_match(pattern))
    statement = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.tenant_id == tenant_id,
            WebhookDelivery.erased_at.is_(None),
            or_(carried, mentioned),
        )
        .values(body=b"", headers={}, erased_at=func.now())
    )
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def erased_since(
    session: AsyncSession, tenant_id: uuid.UUID, subject_hash: bytes, since: datetime
) -> bool:
    """Return whether the person with this email digest was erased at or after `since`."""
    statement = select(
        exists().where(
            AuditEvent.tenant_id == tenant_id,
            AuditEvent.action == AuditAction.PERSON_ERASED,
            AuditEvent.subject_hash == subject_hash,
            AuditEvent.created_at >= since,
        )
    )
    return bool(await session.scalar(statement))
