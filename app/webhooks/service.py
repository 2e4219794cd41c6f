"""Webhook endpoints and deliveries: verify, map, store raw with the outcome, then write the
response.

All of it happens in the request's transaction, so the 2xx that follows the commit means
the delivery and its effects are stored. A verified delivery that cannot be mapped is kept
as `failed` with the reason and still acknowledged, because the platform would only retry
the same bytes. It can be replayed once the endpoint's mapping is fixed. A thin payload
is kept as `pending` until its response is fetched from the platform's API.
"""

import contextlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidField, UnprocessableError
from app.metrics import DeliveryOutcome
from app.privacy import repository as audit_repository
from app.privacy import service as privacy_service
from app.privacy.models import AuditAction, AuditEvent
from app.responses import service as response_service
from app.responses.schemas import ResponseIn
from app.schemas import decode_cursor, encode_cursor, text_problem
from app.tenancy.models import Tenant
from app.webhooks import repository
from app.webhooks.adapters import ADAPTERS, get_adapter
from app.webhooks.adapters.base import Adapter, EndpointConfig, InboundDelivery, text_or_none
from app.webhooks.errors import (
    DeliveryErasedError,
    DeliveryNotFoundError,
    EndpointNotFoundError,
    InvalidSignatureError,
    MappingError,
    UnknownSourceError,
)
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.public_transport import is_public_address
from app.webhooks.schemas import WebhookAck, WebhookEndpointCreate, WebhookEndpointUpdate

log = structlog.get_logger()


@dataclass(frozen=True)
class DeliveryResult:
    """The acknowledgement of a delivery, and its source and outcome for the delivery metrics."""

    ack: WebhookAck
    source: str
    outcome: DeliveryOutcome


ENDPOINT_ID_SCHEME = "wh"
# Headers never stored with a delivery.
_PRIVATE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-revcov-token"})


# Maximum length of a delivery key stored as sent; a longer one is replaced by the digest.
MAX_DELIVERY_KEY_LENGTH = 500


def _storable(text: str) -> str:
    """Make text from a payload storable in PostgreSQL: NUL and lone surrogates become
    U+FFFD. Used for what is recorded about a delivery, never for response content."""
    if text_problem(text) is None:
        return text
    return "".join(
        "\ufffd" if character == "\x00" or "\ud800" <= character <= "\udfff" else character
        for character in text
    )


def delivery_key(adapter: Adapter, delivery: InboundDelivery) -> str:
    """Return the adapter's delivery key, or the body's digest when the key cannot be read
    or stored (a body nested too deeply, NUL characters, an over-long id)."""
    try:
        key = adapter.delivery_key(delivery)
    except (RecursionError, ValueError):
        key = None
    if key is None or len(key) > MAX_DELIVERY_KEY_LENGTH or text_problem(key) is not None:
        return f"sha256:{delivery.body_digest}"
    return key


def new_endpoint_id(tenant_id: uuid.UUID) -> str:
    """Return `wh_<tenant id as 32 hex digits>_<128 random bits in hex>`.

    The random part makes the URL unguessable; the tenant part scopes the lookup.
    """
    return f"{ENDPOINT_ID_SCHEME}_{tenant_id.hex}_{secrets.token_hex(16)}"


def loggable_endpoint_id(endpoint_id: str) -> str:
    """Return the endpoint id with its random part cut to 8 hex digits, for log lines.

    For platforms that sign nothing (SatisMeter, and Jotform without a token) the whole id
    is the only credential of the webhook URL, so no log line carries it.
    """
    scheme_and_tenant, _, random_part = endpoint_id.rpartition("_")
    return f"{scheme_and_tenant[:40]}_{random_part[:8]}..."


def tenant_id_from_endpoint_id(endpoint_id: str) -> uuid.UUID | None:
    parts = endpoint_id.split("_")
    if len(parts) != 3 or parts[0] != ENDPOINT_ID_SCHEME or len(parts[1]) != 32:
        return None
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        return None


def adapter_for(source: str) -> Adapter:
    adapter = get_adapter(source)
    if adapter is None:
        supported = ", ".join(sorted(ADAPTERS))
        raise UnknownSourceError(
            f"Unknown source {source!r}; supported sources: {supported}.",
            errors=[InvalidField(location="body.source", message=f"must be one of: {supported}")],
        )
    return adapter


def _generate_secret(adapter: Adapter) -> str:
    """Generate a signing secret in the adapter's format (`generate_secret`), else a random one."""
    generate = getattr(adapter, "generate_secret", None)
    if callable(generate):
        return str(generate())
    return secrets.token_urlsafe(32)


def endpoint_config(endpoint: WebhookEndpoint) -> EndpointConfig:
    return EndpointConfig(
        source=endpoint.source,
        secrets=tuple(endpoint.secrets),
        account_field=endpoint.account_field,
        score_field=endpoint.score_field,
        comment_field=endpoint.comment_field,
        timezone=endpoint.timezone,
        token=endpoint.token,
        api_base_url=endpoint.api_base_url,
        api_token=endpoint.api_token,
    )


def _settings_values(body: WebhookEndpointCreate | WebhookEndpointUpdate) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True, exclude={"source", "secret", "secrets"})
    if values.get("api_base_url") is not None:
        values["api_base_url"] = str(values["api_base_url"])
    return values


def check_api_base_url(url: str | None, *, allow_private_hosts: bool) -> None:
    """Reject an API base URL on localhost or a private, loopback or link-local address,
    so that a tenant cannot make the fetcher reach the service's internal network."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise UnprocessableError(
            "api_base_url must not contain a user name or password, which would be stored "
            "and shown with the endpoint; put the platform's credential in api_token.",
            errors=[
                InvalidField(location="body.api_base_url", message="user name or password in URL")
            ],
        )
    try:
        # Python's IDNA codec rejects a name no lookup could resolve, such as one with a
        # label over 63 characters or an empty label.
        (parts.hostname or "").encode("idna")
    except UnicodeError:
        raise UnprocessableError(
            "api_base_url has a host name that no lookup can resolve, such as one with an "
            "empty part or a part over 63 characters.",
            errors=[InvalidField(location="body.api_base_url", message="invalid host name")],
        ) from None
    if allow_private_hosts:
        return
    host = (parts.hostname or "").lower().rstrip(".")
    private = host == "localhost" or host.endswith(".localhost")
    # A host that is not an IP address raises ValueError and keeps the name check.
    with contextlib.suppress(ValueError):
        private = not is_public_address(host)
    # A host name is not resolved here. Each fetch checks the addresses its name resolves
    # to then (`PublicAddressTransport`).
    if private:
        raise UnprocessableError(
            f"api_base_url host {host!r} is a local or private address; use the platform's "
            "public API address.",
            errors=[InvalidField(location="body.api_base_url", message="local or private address")],
        )


async def create_endpoint(
    session: AsyncSession,
    tenant: Tenant,
    body: WebhookEndpointCreate,
    *,
    actor_key_id: uuid.UUID,
    allow_private_hosts: bool = False,
) -> WebhookEndpoint:
    """Create an endpoint and record it in the audit log, without its secrets."""
    adapter = adapter_for(body.source)
    check_api_base_url(
        str(body.api_base_url) if body.api_base_url else None,
        allow_private_hosts=allow_private_hosts,
    )
    if body.secrets is not None:
        endpoint_secrets = list(body.secrets)
    else:
        endpoint_secrets = [body.secret or _generate_secret(adapter)]
    values = _settings_values(body)
    values["account_field"] = values.get("account_field") or adapter.default_account_field
    values.setdefault("timezone", "UTC")
    if values["timezone"] is None:
        values["timezone"] = "UTC"
    endpoint = WebhookEndpoint(
        tenant_id=tenant.id,
        id=new_endpoint_id(tenant.id),
        source=body.source,
        secrets=endpoint_secrets,
        **values,
    )
    endpoint = await repository.add_endpoint(session, endpoint)
    await audit_repository.add_audit_event(
        session,
        AuditEvent(
            tenant_id=tenant.id,
            action=AuditAction.WEBHOOK_ENDPOINT_CREATED,
            actor_key_id=actor_key_id,
            object_id=endpoint.id,
            details={"source": endpoint.source, "secret_count": len(endpoint.secrets)},
        ),
    )
    log.info(
        "webhook_endpoint.created",
        tenant_id=str(tenant.id),
        endpoint_id=loggable_endpoint_id(endpoint.id),
        source=endpoint.source,
    )
    return endpoint


async def get_endpoint(session: AsyncSession, tenant: Tenant, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await repository.get_endpoint(session, tenant.id, endpoint_id)
    if endpoint is None:
        # The id is not repeated: its random part is the webhook URL's only secret for
        # platforms that sign nothing, and error details reach the logs.
        raise EndpointNotFoundError("No webhook endpoint with this id in this tenant.")
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    tenant: Tenant,
    endpoint_id: str,
    body: WebhookEndpointUpdate,
    *,
    actor_key_id: uuid.UUID,
    allow_private_hosts: bool = False,
) -> WebhookEndpoint:
    """Change an endpoint's settings and record the names of the changed fields in the
    audit log. Secrets and tokens are recorded by name only, never by value."""
    endpoint = await get_endpoint(session, tenant, endpoint_id)
    check_api_base_url(
        str(body.api_base_url) if body.api_base_url else None,
        allow_private_hosts=allow_private_hosts,
    )
    values = _settings_values(body)
    if "secrets" in body.model_fields_set and body.secrets is not None:
        values["secrets"] = list(body.secrets)
    if values.get("account_field", "") is None:
        values["account_field"] = adapter_for(endpoint.source).default_account_field
    if "timezone" in values and values["timezone"] is None:
        values["timezone"] = "UTC"
    if not values:
        return endpoint
    updated = await repository.update_endpoint(session, tenant.id, endpoint_id, values)
    await audit_repository.add_audit_event(
        session,
        AuditEvent(
            tenant_id=tenant.id,
            action=AuditAction.WEBHOOK_ENDPOINT_UPDATED,
            actor_key_id=actor_key_id,
            object_id=endpoint_id,
            details={"fields": sorted(values), "secret_count": len(updated.secrets)},
        ),
    )
    log.info(
        "webhook_endpoint.updated",
        tenant_id=str(tenant.id),
        endpoint_id=loggable_endpoint_id(endpoint_id),
        fields=sorted(values),
    )
    return updated


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
            "No webhook endpoint with this id; create one with POST /v1/webhook-endpoints."
        )
    return endpoint


@dataclass(frozen=True)
class MappingOutcome:
    """The result of mapping a delivery: its stored status and fields, and the response to write."""

    status: Literal["processed", "pending", "ignored", "failed"]
    event_type: str | None = None
    response: ResponseIn | None = None
    error: str | None = None
    # The error without payload values, for the log line (see `MappingError.log_reason`).
    log_error: str | None = None
    fetch: dict[str, str] | None = None
    next_attempt_at: datetime | None = None
    # An exception an adapter raised on this payload, logged once the delivery has an id.
    crash: Exception | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "event_type": self.event_type,
            "response_id": self.response.response_id if self.response else None,
            "error": self.error,
            "fetch": self.fetch,
            "next_attempt_at": self.next_attempt_at,
        }


def _event_type_of(adapter: Adapter, delivery: InboundDelivery) -> str | None:
    """Read the event type of a delivery that failed to map, where the platform names it
    at the top of a JSON object."""
    if adapter.event_type_field is None:
        return None
    try:
        payload = delivery.parsed_json()
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    event_type = text_or_none(payload.get(adapter.event_type_field))
    return None if event_type is None else _storable(event_type)


def map_delivery(
    endpoint: WebhookEndpoint, delivery: InboundDelivery, *, config: EndpointConfig | None = None
) -> MappingOutcome:
    """Map a delivery with the endpoint's current settings; nothing is written here.

    `config` is `endpoint_config(endpoint)` when the caller has built it already.
    """
    adapter = adapter_for(endpoint.source)
    crash = None
    try:
        mapped = adapter.map(delivery, config if config is not None else endpoint_config(endpoint))
    except RecursionError:
        mapped = None
        error = MappingError("the body nests too deeply to be read")
    except MappingError as mapping_error:
        mapped = None
        error = mapping_error
    except Exception as adapter_error:
        # An adapter bug must not lose a verified delivery: it is kept as failed, and can
        # be replayed once a fixed release is deployed.
        mapped = None
        crash = adapter_error
        error = MappingError(
            f"the {endpoint.source} adapter could not read this payload "
            f"({type(adapter_error).__name__}); replay it after upgrading revcov"
        )
    if mapped is None:
        return MappingOutcome(
            status="failed",
            event_type=_event_type_of(adapter, delivery),
            error=_storable(error.reason),
            log_error=error.log_reason,
            crash=crash,
        )

    event_type = None if mapped.event_type is None else _storable(mapped.event_type)
    if mapped.response is not None:
        return MappingOutcome(status="processed", event_type=event_type, response=mapped.response)
    if mapped.fetch is not None:
        fetch = {key: _storable(value) for key, value in mapped.fetch.items()}
        return MappingOutcome(
            status="pending",
            event_type=event_type,
            fetch=fetch,
            next_attempt_at=delivery.received_at,
        )
    return MappingOutcome(status="ignored", event_type=event_type)


async def _apply(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    delivery_id: int,
    outcome: MappingOutcome,
    *,
    replay: bool = False,
) -> DeliveryResult:
    """Write the mapped response of a stored delivery, log the outcome and acknowledge it.

    A `replay` replaces the stored response also with the same version, since it maps that
    version again with the endpoint's current settings.
    """
    fields = {
        "tenant_id": str(endpoint.tenant_id),
        "endpoint_id": loggable_endpoint_id(endpoint.id),
        "delivery_id": delivery_id,
    }
    if outcome.crash is not None:
        log.error("webhook.adapter_crashed", exc_info=outcome.crash, **fields)
    if outcome.status == "failed":
        log.warning("webhook.mapping_failed", reason=outcome.log_error, **fields)
        ack = WebhookAck(status="failed", delivery_id=delivery_id, detail=outcome.error)
        return DeliveryResult(ack, endpoint.source, "failed")

    counted: DeliveryOutcome
    if outcome.response is not None:
        await response_service.write_responses(
            session, endpoint.tenant_id, [outcome.response], replace_same_version=replay
        )
        matched = await response_service.is_matched(
            session, endpoint.tenant_id, outcome.response.source, outcome.response.response_id
        )
        counted = "accepted" if matched else "unmatched"
    else:
        counted = "pending" if outcome.status == "pending" else "ignored"
    log.info(
        "webhook.received",
        status=outcome.status,
        outcome=counted,
        event_type=outcome.event_type,
        **fields,
    )
    return DeliveryResult(
        WebhookAck(status=outcome.status, delivery_id=delivery_id), endpoint.source, counted
    )


async def receive(
    session: AsyncSession, endpoint: WebhookEndpoint, delivery: InboundDelivery
) -> DeliveryResult:
    """Verify a delivery, store it once with the outcome of mapping it, and write its response.

    The delivery is mapped before it is stored, so that one INSERT records it with its
    outcome. A duplicate is mapped for nothing, but writes nothing.
    """
    adapter = adapter_for(endpoint.source)
    config = endpoint_config(endpoint)
    try:
        adapter.verify(delivery, config)
    except InvalidSignatureError as error:
        log.warning(
            "webhook.signature_rejected",
            tenant_id=str(endpoint.tenant_id),
            endpoint_id=loggable_endpoint_id(endpoint.id),
            source=endpoint.source,
            reason=error.detail,
        )
        raise

    outcome = map_delivery(endpoint, delivery)
    values = delivery_columns(endpoint, delivery, delivery_key(adapter, delivery), outcome)
    delivery_id = await repository.insert_delivery(session, values)
    if delivery_id is None:
        return duplicate_result(endpoint, values["delivery_key"])
    return await _apply(session, endpoint, delivery_id, outcome)


def delivery_columns(
    endpoint: WebhookEndpoint, delivery: InboundDelivery, key: str, outcome: MappingOutcome
) -> dict[str, Any]:
    """Return the columns of a new `webhook_deliveries` row, without private headers."""
    return {
        "tenant_id": endpoint.tenant_id,
        "endpoint_id": endpoint.id,
        "delivery_key": key,
        "source": endpoint.source,
        "content_type": delivery.headers.get("content-type"),
        "headers": {
            name: value for name, value in delivery.headers.items() if name not in _PRIVATE_HEADERS
        },
        "body": delivery.body,
        "received_at": delivery.received_at,
        **outcome.columns(),
    }


def duplicate_result(endpoint: WebhookEndpoint, key: str) -> DeliveryResult:
    """Log a repeated delivery, which wrote nothing, and acknowledge it as a duplicate."""
    log.info(
        "webhook.duplicate_ignored",
        tenant_id=str(endpoint.tenant_id),
        endpoint_id=loggable_endpoint_id(endpoint.id),
        key=key,
    )
    return DeliveryResult(
        WebhookAck(status="duplicate", delivery_id=None), endpoint.source, "duplicate"
    )


async def list_deliveries(
    session: AsyncSession,
    tenant: Tenant,
    *,
    status: str | None,
    endpoint_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[WebhookDelivery], str | None]:
    after = decode_cursor(cursor, int) if cursor else None
    rows = await repository.list_deliveries(
        session, tenant.id, status=status, endpoint_id=endpoint_id, after_id=after, limit=limit + 1
    )
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def get_delivery(session: AsyncSession, tenant: Tenant, delivery_id: int) -> WebhookDelivery:
    delivery = await repository.get_delivery(session, tenant.id, delivery_id)
    if delivery is None:
        raise DeliveryNotFoundError(f"No webhook delivery {delivery_id}.")
    return delivery


async def replay_delivery(session: AsyncSession, tenant: Tenant, delivery_id: int) -> WebhookAck:
    """Map a stored delivery again with its endpoint's current settings.

    The signature is not checked again: it was checked when the delivery arrived, and
    signatures with a timestamp would have expired since.
    """
    stored = await repository.get_delivery(session, tenant.id, delivery_id, for_update=True)
    if stored is None:
        raise DeliveryNotFoundError(f"No webhook delivery {delivery_id}.")
    if stored.erased_at is not None:
        raise DeliveryErasedError(
            f"Webhook delivery {delivery_id} cannot be replayed: its payload was erased "
            "by a privacy request."
        )
    endpoint = await get_endpoint(session, tenant, stored.endpoint_id)
    delivery = InboundDelivery(
        body=stored.body, headers=stored.headers, received_at=stored.received_at
    )
    log.info("webhook.replayed", tenant_id=str(tenant.id), delivery_id=delivery_id)
    outcome = map_delivery(endpoint, delivery)
    if outcome.response is not None:
        # A body the erasure missed must not bring an erased person's data back.
        response = await privacy_service.without_erased_data(
            session, tenant.id, outcome.response, stored.received_at
        )
        outcome = replace(outcome, response=response)
    await repository.set_delivery_outcome(session, tenant.id, stored.id, **outcome.columns())
    result = await _apply(session, endpoint, stored.id, outcome, replay=True)
    return result.ack
