"""Webhook endpoints and deliveries: verify, store raw, map, then write the response.

All of it happens in the request's transaction, so the 2xx that follows the commit means
the delivery and its response are stored. A verified delivery that cannot be mapped is
kept as `failed` with the reason and still acknowledged, because the platform would
only retry the same bytes.
"""

import secrets
import uuid
from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidField
from app.responses import service as response_service
from app.schemas import decode_cursor, encode_cursor
from app.tenancy.models import Tenant
from app.webhooks import repository
from app.webhooks.adapters import ADAPTERS, get_adapter
from app.webhooks.adapters.base import Adapter, EndpointConfig, InboundDelivery
from app.webhooks.errors import EndpointNotFoundError, MappingError, UnknownSourceError
from app.webhooks.models import WebhookEndpoint
from app.webhooks.schemas import WebhookAck, WebhookEndpointCreate

log = structlog.get_logger()

ENDPOINT_ID_SCHEME = "wh"
# Headers never stored with a delivery.
_PRIVATE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def new_endpoint_id(tenant_id: uuid.UUID) -> str:
    """Return `wh_<tenant id as 32 hex digits>_<128 random bits in hex>`.

    The random part makes the URL unguessable; the tenant part scopes the lookup.
    """
    return f"{ENDPOINT_ID_SCHEME}_{tenant_id.hex}_{secrets.token_hex(16)}"


def tenant_id_from_endpoint_id(endpoint_id: str) -> uuid.UUID | None:
    parts = endpoint_id.split("_")
    if len(parts) != 3 or parts[0] != ENDPOINT_ID_SCHEME or len(parts[1]) != 32:
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


def _adapter_for(source: str) -> Adapter:
    adapter = get_adapter(source)
    if adapter is None:
        supported = ", ".join(sorted(ADAPTERS))
        raise UnknownSourceError(
            f"Unknown source {source!r}; supported sources: {supported}.",
            errors=[InvalidField(location="body.source", message=f"must be one of: {supported}")],
        )
    return adapter


def _config(endpoint: WebhookEndpoint) -> EndpointConfig:
    return EndpointConfig(
        secret=endpoint.secret,
        account_field=endpoint.account_field,
        score_field=endpoint.score_field,
        comment_field=endpoint.comment_field,
    )


async def create_endpoint(
    session: AsyncSession, tenant: Tenant, body: WebhookEndpointCreate
) -> WebhookEndpoint:
    adapter = _adapter_for(body.source)
    endpoint = WebhookEndpoint(
        tenant_id=tenant.id,
        id=new_endpoint_id(tenant.id),
        source=body.source,
        secret=body.secret or secrets.token_urlsafe(32),
        account_field=body.account_field or adapter.default_account_field,
        score_field=body.score_field,
        comment_field=body.comment_field,
    )
    endpoint = await repository.add_endpoint(session, endpoint)
    log.info(
        "webhook_endpoint.created",
        tenant_id=str(tenant.id),
        endpoint_id=endpoint.id,
        source=endpoint.source,
    )
    return endpoint


async def list_endpoints(
    session: AsyncSession, tenant: Tenant, *, limit: int, cursor: str | None
) -> tuple[Sequence[WebhookEndpoint], str | None]:
    after = decode_cursor(cursor, str) if cursor else None
    rows = await repository.list_endpoints(session, tenant.id, after_id=after, limit=limit + 1)
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def find_endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    """Find the endpoint a delivery is addressed to, by its unguessable id alone."""
    tenant_id = tenant_id_from_endpoint_id(endpoint_id)
    endpoint = None
    if tenant_id is not None:
        endpoint = await repository.get_endpoint(session, tenant_id, endpoint_id)
    if endpoint is None:
        raise EndpointNotFoundError(
            f"No webhook endpoint {endpoint_id[:80]!r}; create one with POST /v1/webhook-endpoints."
        )
    return endpoint


async def receive(
    session: AsyncSession, endpoint: WebhookEndpoint, delivery: InboundDelivery
) -> WebhookAck:
    adapter = _adapter_for(endpoint.source)
    config = _config(endpoint)
    adapter.verify(delivery, config)

    key = adapter.delivery_key(delivery)
    delivery_id = await repository.insert_delivery(
        session,
        {
            "tenant_id": endpoint.tenant_id,
            "endpoint_id": endpoint.id,
            "delivery_key": key,
            "source": endpoint.source,
            "status": "received",
            "content_type": delivery.headers.get("content-type"),
            "headers": {
                name: value
                for name, value in delivery.headers.items()
                if name not in _PRIVATE_HEADERS
            },
            "body": delivery.body,
        },
    )
    fields = {"tenant_id": str(endpoint.tenant_id), "endpoint_id": endpoint.id, "key": key}
    if delivery_id is None:
        log.info("webhook.duplicate_ignored", **fields)
        return WebhookAck(status="duplicate", delivery_id=None)

    try:
        mapped = adapter.map(delivery, config)
    except MappingError as error:
        await repository.set_delivery_outcome(
            session,
            endpoint.tenant_id,
            delivery_id,
            status="failed",
            event_type=None,
            response_id=None,
            error=error.reason,
        )
        log.warning(
            "webhook.mapping_failed", delivery_id=delivery_id, reason=error.reason, **fields
        )
        return WebhookAck(status="failed", delivery_id=delivery_id, detail=error.reason)

    if mapped.response is None:
        status = "ignored"
    else:
        await response_service.write_responses(session, endpoint.tenant_id, [mapped.response])
        status = "processed"
    await repository.set_delivery_outcome(
        session,
        endpoint.tenant_id,
        delivery_id,
        status=status,
        event_type=mapped.event_type,
        response_id=mapped.response.response_id if mapped.response else None,
        error=None,
    )
    log.info("webhook.received", delivery_id=delivery_id, status=status, **fields)
    return WebhookAck(status=status, delivery_id=delivery_id)
