import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from app.webhooks.models import WebhookDelivery, WebhookDeliveryKey, WebhookEndpoint


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def get_endpoint(
    session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: str
) -> WebhookEndpoint | None:
    statement = select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id == endpoint_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def update_endpoint(
    session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: str, values: dict[str, Any]
) -> WebhookEndpoint:
    statement = (
        update(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id == endpoint_id)
        .values(**values)
        .returning(WebhookEndpoint)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def list_endpoints(
    session: AsyncSession, tenant_id: uuid.UUID, *, after_id: str | None, limit: int
) -> Sequence[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(WebhookEndpoint.id > after_id)
    return (await session.scalars(statement)).all()


async def insert_delivery(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Store a delivery once per (tenant, endpoint, delivery key) and return its id; None
    when it is already stored.

    The key goes into `webhook_delivery_keys` first. A concurrent copy waits on its primary
    key until the first commits, then gets None.
    """
    claimed = await session.execute(
        insert(WebhookDeliveryKey)
        .values(
            tenant_id=values["tenant_id"],
            endpoint_id=values["endpoint_id"],
            delivery_key=values["delivery_key"],
            received_at=values["received_at"],
        )
        .on_conflict_do_nothing()
        .returning(WebhookDeliveryKey.delivery_key)
    )
    if claimed.scalar_one_or_none() is None:
        return None
    statement = insert(WebhookDelivery).values(**values).returning(WebhookDelivery.id)
    delivery_id: int = (await session.execute(statement)).scalar_one()
    return delivery_id


async def get_delivery(
    session: AsyncSession, tenant_id: uuid.UUID, delivery_id: int, *, for_update: bool = False
) -> WebhookDelivery | None:
    statement = select(WebhookDelivery).where(
        WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id
    )
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_deliveries(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    endpoint_id: str | None,
    after_id: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id)
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    if endpoint_id is not None:
        statement = statement.where(WebhookDelivery.endpoint_id == endpoint_id)
    if after_id is not None:
        statement = statement.where(WebhookDelivery.id > after_id)
    return (await session.scalars(statement)).all()


async def set_delivery_outcome(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    delivery_id: int,
    *,
    status: str,
    event_type: str | None,
    response_id: str | None,
    error: str | None,
    fetch: dict[str, str] | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id)
        .values(
            status=status,
            event_type=event_type,
            response_id=response_id,
            error=error,
            fetch=fetch,
            next_attempt_at=next_attempt_at,
            # A delivery that becomes pending again (a replay) gets a fresh set of attempts.
            **({"attempts": 0} if status == "pending" else {}),
        )
    )


async def claim_due_deliveries(
    session: AsyncSession, *, due_by: datetime, limit: int
) -> Sequence[WebhookDelivery]:
    """Lock up to `limit` pending deliveries of every tenant whose next fetch is due by
    `due_by`, the longest-waiting first.

    This read spans tenants because one fetcher serves them all. Rows that another
    transaction holds are skipped (`FOR UPDATE SKIP LOCKED`), and the locks last until this
    transaction ends, so concurrent fetchers never claim the same delivery.
    """
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= due_by)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .options(
            defer(WebhookDelivery.body, raiseload=True),
            defer(WebhookDelivery.headers, raiseload=True),
        )
    )
    return (await session.scalars(statement)).all()


async def set_fetch_outcome(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    delivery_id: int,
    *,
    status: str,
    attempts: int,
    next_attempt_at: datetime | None,
    error: str | None,
    response_id: str | None = None,
) -> None:
    """Record one fetch attempt of a thin payload. The event type and fetch stay as stored."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id)
        .values(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            error=error,
            response_id=response_id,
        )
    )
