import re
import uuid
from collections.abc import Sequence

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.privacy.models import AuditEvent
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
    """Build a PostgreSQL regular expression that finds the lower-cased email in a body, as
    is or with the @ percent-encoded, and not as part of a longer address."""
    forms = "|".join(re.escape(form) for form in (email, email.replace("@", "%40")))
    return rf"(?<![a-z0-9._%+-])(?:{forms})(?![a-z0-9_-]|\.[a-z0-9])"


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
    mentioned = body_text.regexp_match(_mention_pattern(email.lower()))
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
