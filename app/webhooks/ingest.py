"""The fast path of webhook ingest, for deliveries whose mapping yields a response.

It does what `service.receive` does for such a delivery, in one SQL statement on the raw
asyncpg connection (`repository.ingest_processed`). The process's `IngestWriter` sends it
in autocommit when no other write is in flight, and otherwise in one transaction with the
deliveries that arrived meanwhile (`app.webhooks.group_commit`). Either way the write is
atomic, and with `synchronous_commit` on it is durable before the 2xx that follows, so
a 2xx still means that the delivery and its response are stored. The ORM path takes
about 8 round trips and much more Python work per delivery.

Endpoints are cached in the process with a digest of their settings. The write statement
checks that digest against the stored row, so a deleted, rotated or changed endpoint is
never used from a stale cache.

In every case the fast path does not cover, it returns None and the caller runs the ORM
path. These cases are a stale cached endpoint, a failed signature (which the ORM path
rejects and logs after reading the endpoint again), and every mapping outcome other than
`processed`: pending fetches, ignored events and failed mappings.
"""

from collections import OrderedDict
from dataclasses import dataclass

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import render_database_error
from app.settings import Settings
from app.webhooks import repository, service
from app.webhooks.adapters.base import EndpointConfig, InboundDelivery
from app.webhooks.dependencies import inbound_delivery, text_encoding_problem
from app.webhooks.errors import InvalidSignatureError
from app.webhooks.group_commit import IngestWriter, raw_connection
from app.webhooks.models import WebhookEndpoint
from app.webhooks.repository import ProcessedDelivery
from app.webhooks.schemas import WebhookAck

log = structlog.get_logger()

# Endpoints kept per process. An endpoint past this count is read again when it is next used.
ENDPOINT_CACHE_SIZE = 1024


# The upsert's effect on the response, by its `inserted` column (null: nothing written).
_RESPONSE_WRITES = {True: "created", False: "updated", None: "unchanged"}


@dataclass(frozen=True)
class CachedEndpoint:
    endpoint: WebhookEndpoint
    # `md5` of the stored settings, which the write statement compares with the row.
    fingerprint: str
    # The endpoint's settings as its adapter reads them, built once per cached endpoint.
    config: EndpointConfig


class EndpointCache:
    """The most recently used endpoints, by endpoint id."""

    def __init__(self, size: int = ENDPOINT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[str, CachedEndpoint] = OrderedDict()

    def get(self, endpoint_id: str) -> CachedEndpoint | None:
        entry = self._entries.get(endpoint_id)
        if entry is not None:
            self._entries.move_to_end(endpoint_id)
        return entry

    def put(self, endpoint_id: str, entry: CachedEndpoint) -> None:
        self._entries[endpoint_id] = entry
        self._entries.move_to_end(endpoint_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, endpoint_id: str) -> None:
        self._entries.pop(endpoint_id, None)


def _endpoint_from_row(row: asyncpg.Record) -> CachedEndpoint:
    fields = dict(row)
    fingerprint = fields.pop("fingerprint")
    fields["secrets"] = list(fields["secrets"])
    endpoint = WebhookEndpoint(**fields)
    return CachedEndpoint(
        endpoint=endpoint, fingerprint=fingerprint, config=service.endpoint_config(endpoint)
    )


async def receive_processed(
    writer: IngestWriter, cache: EndpointCache, endpoint_id: str, delivery: InboundDelivery
) -> service.DeliveryResult | None:
    """Store a delivery and write its response, alone or in a batch (`IngestWriter`).

    Returns None when the caller must run the ORM path instead (see the module docstring).
    """
    tenant_id = service.tenant_id_from_endpoint_id(endpoint_id)
    if tenant_id is None:
        return None
    cached = cache.get(endpoint_id)
    from_cache = cached is not None
    if cached is None:
        async with raw_connection(writer.engine) as connection:
            row = await repository.fetch_endpoint_raw(connection, tenant_id, endpoint_id)
        if row is None:
            return None
        cached = _endpoint_from_row(row)
        cache.put(endpoint_id, cached)
    return await _receive(writer, cache, cached, from_cache=from_cache, delivery=delivery)


async def _receive(
    writer: IngestWriter,
    cache: EndpointCache,
    cached: CachedEndpoint,
    *,
    from_cache: bool,
    delivery: InboundDelivery,
) -> service.DeliveryResult | None:
    endpoint = cached.endpoint
    endpoint_id = endpoint.id

    adapter = service.adapter_for(endpoint.source)
    try:
        adapter.verify(delivery, cached.config)
    except InvalidSignatureError:
        if from_cache:
            # The secrets may have been rotated since the endpoint was cached.
            cache.drop(endpoint_id)
        return None
    outcome = service.map_delivery(endpoint, delivery, config=cached.config)
    response = outcome.response
    if outcome.status != "processed" or response is None:
        return None

    values = service.delivery_columns(
        endpoint, delivery, service.delivery_key(adapter, delivery), outcome
    )
    written = await writer.write(ProcessedDelivery(cached.fingerprint, values, response))
    if not written.endpoint_current:
        cache.drop(endpoint_id)
        return None
    delivery_id = written.delivery_id
    if delivery_id is None:
        return service.duplicate_result(endpoint, values["delivery_key"])

    matched = written.matched
    log.info(
        "webhook.received",
        status=outcome.status,
        outcome="accepted" if matched else "unmatched",
        event_type=outcome.event_type,
        response=_RESPONSE_WRITES[written.inserted],
        tenant_id=str(endpoint.tenant_id),
        endpoint_id=service.loggable_endpoint_id(endpoint_id),
        delivery_id=delivery_id,
    )
    return service.DeliveryResult(
        WebhookAck(status="processed", delivery_id=delivery_id),
        endpoint.source,
        "accepted" if matched else "unmatched",
    )


# Set on the scope of a delivery that the middleware below already tried on the fast path,
# so that the route does not try it again.
FAST_PATH_TRIED_SCOPE_KEY = "revcov.webhook_fast_path_tried"
_WEBHOOK_PATH_PREFIX = "/v1/webhooks/"
# The route's limit on the endpoint id (`EndpointId` in `app.webhooks.router`).
_MAX_ENDPOINT_ID_LENGTH = 200


class WebhookIngestMiddleware:
    """Run the fast path for `POST /v1/webhooks/{endpoint_id}` before the router.

    Routing among all the service's routes and FastAPI's request handling took about a
    quarter of the service's CPU time per delivery. This middleware sits inside every
    other middleware (request id, logs, metrics, rate limits), so those still see each
    delivery. It sets the route in the scope for their labels. Anything it does not
    handle goes on to the route unchanged, with the body it read passed along: a body
    without a `Content-Length` within the webhook limit, an invalid endpoint id, and
    every delivery for which `receive_processed` returns None.
    """

    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        self.app = app
        # The route of `POST /v1/webhooks/{endpoint_id}`, which labels logs and metrics.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._handles(scope):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        state = request.app.state
        delivery = await inbound_delivery(request)
        scope[FAST_PATH_TRIED_SCOPE_KEY] = True
        endpoint_id: str = scope["path"].removeprefix(_WEBHOOK_PATH_PREFIX)
        if text_encoding_problem(delivery) is not None:
            # The route rejects the body with its 422.
            await self.app(scope, _replay_body(delivery.body, receive), send)
            return
        try:
            result = await receive_processed(
                state.webhook_ingest_writer, state.webhook_endpoint_cache, endpoint_id, delivery
            )
        except (DBAPIError, SQLAlchemyTimeoutError, OSError) as error:
            response = await render_database_error(request, error)
            await response(scope, receive, send)
            return
        if result is None:
            await self.app(scope, _replay_body(delivery.body, receive), send)
            return
        state.metrics.record_delivery(result.source, result.outcome)
        # The same bytes as a JSONResponse of `model_dump(mode="json")`, in one step.
        ack = Response(result.ack.model_dump_json(), media_type="application/json")
        await ack(scope, receive, send)

    def _handles(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path: str = scope["path"]
        endpoint_id = path.removeprefix(_WEBHOOK_PATH_PREFIX)
        if endpoint_id == path or not 0 < len(endpoint_id) <= _MAX_ENDPOINT_ID_LENGTH:
            return False
        state = scope["app"].state
        if "/" in endpoint_id or getattr(state, "webhook_endpoint_cache", None) is None:
            return False
        settings: Settings = state.settings
        declared = Headers(scope=scope).get("content-length")
        # Without a declared length within the limit, the route reads the body and rejects
        # an oversized one with its 413.
        return (
            declared is not None
            and declared.isdigit()
            and int(declared) <= settings.webhook_max_body_bytes
        )


def _replay_body(body: bytes, receive: Receive) -> Receive:
    """Return a `receive` that yields the body read already, then the client's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
