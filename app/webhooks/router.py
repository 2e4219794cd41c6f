from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.routing import APIRoute

from app.db.session import SessionDep, session_scope
from app.errors import problem_content
from app.metrics import ServiceMetrics
from app.routing import PlatformRoute, ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import AdminTenant, CurrentCaller, IngestTenant, ReadTenant
from app.webhooks import ingest as webhook_ingest
from app.webhooks import service as webhook_service
from app.webhooks.dependencies import (
    AppSettings,
    WebhookUrl,
    inbound_delivery,
    reject_unstorable_text,
)
from app.webhooks.errors import InvalidSignatureError
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import (
    DeliveryStatus,
    WebhookAck,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
)

router = APIRouter(tags=["webhooks"], route_class=ServiceRoute)
# The URLs that survey platforms call. `router` includes them, with its tag, at the end of
# this module.
platform_router = APIRouter(route_class=PlatformRoute)

EndpointId = Annotated[str, Path(max_length=200, description="The endpoint id from its URL.")]
# Delivery ids are PostgreSQL bigint values, so a larger number cannot name one.
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The delivery's id.")]


def _endpoint_fields(endpoint: WebhookEndpoint, url: WebhookUrl) -> dict[str, object]:
    return {
        "id": endpoint.id,
        "source": endpoint.source,
        "url": url(endpoint.id),
        "account_field": endpoint.account_field,
        "score_field": endpoint.score_field,
        "comment_field": endpoint.comment_field,
        "timezone": endpoint.timezone,
        "api_base_url": endpoint.api_base_url,
        "secret_count": len(endpoint.secrets),
        "has_token": endpoint.token is not None,
        "has_api_token": endpoint.api_token is not None,
        "created_at": endpoint.created_at,
    }


def _delivery_read(delivery: WebhookDelivery) -> WebhookDeliveryRead:
    return WebhookDeliveryRead.model_validate(delivery)


@router.post(
    "/v1/webhook-endpoints",
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook endpoint for a survey platform",
)
async def create_webhook_endpoint(
    session: SessionDep,
    tenant: AdminTenant,
    caller: CurrentCaller,
    body: WebhookEndpointCreate,
    url: WebhookUrl,
    settings: AppSettings,
) -> WebhookEndpointCreated:
    endpoint = await webhook_service.create_endpoint(
        session,
        tenant,
        body,
        actor_key_id=caller.api_key.id,
        allow_private_hosts=settings.webhook_fetch_allow_private_hosts,
    )
    return WebhookEndpointCreated.model_validate(
        {**_endpoint_fields(endpoint, url), "secret": endpoint.secrets[0]}
    )


@router.get("/v1/webhook-endpoints", summary="List webhook endpoints (without secrets)")
async def list_webhook_endpoints(
    session: SessionDep,
    tenant: ReadTenant,
    url: WebhookUrl,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[WebhookEndpointRead]:
    endpoints, next_cursor = await webhook_service.list_endpoints(
        session, tenant, limit=limit, cursor=cursor
    )
    items = [
        WebhookEndpointRead.model_validate(_endpoint_fields(endpoint, url))
        for endpoint in endpoints
    ]
    return Page[WebhookEndpointRead](items=items, next_cursor=next_cursor)


@router.get("/v1/webhook-endpoints/{endpoint_id}", summary="Get a webhook endpoint")
async def get_webhook_endpoint(
    session: SessionDep, tenant: ReadTenant, endpoint_id: EndpointId, url: WebhookUrl
) -> WebhookEndpointRead:
    endpoint = await webhook_service.get_endpoint(session, tenant, endpoint_id)
    return WebhookEndpointRead.model_validate(_endpoint_fields(endpoint, url))


@router.patch(
    "/v1/webhook-endpoints/{endpoint_id}",
    summary="Change an endpoint's mapping, secrets or API credentials",
)
async def patch_webhook_endpoint(
    session: SessionDep,
    tenant: AdminTenant,
    caller: CurrentCaller,
    endpoint_id: EndpointId,
    body: WebhookEndpointUpdate,
    url: WebhookUrl,
    settings: AppSettings,
) -> WebhookEndpointRead:
    endpoint = await webhook_service.update_endpoint(
        session,
        tenant,
        endpoint_id,
        body,
        actor_key_id=caller.api_key.id,
        allow_private_hosts=settings.webhook_fetch_allow_private_hosts,
    )
    return WebhookEndpointRead.model_validate(_endpoint_fields(endpoint, url))


@platform_router.post(
    "/v1/webhooks/{endpoint_id}",
    name="receive_webhook",
    summary="Receive a delivery from a survey platform",
    description=(
        "Called by the survey platform, not by API clients: no API key, the platform's "
        "signature instead. 200 means the delivery is stored, even when it cannot be "
        "mapped (status `failed`, listed under /v1/webhook-deliveries); 401 means the "
        "signature failed and nothing was stored. A body with a NUL byte outside "
        "`multipart/form-data`, as in UTF-16 or UTF-32 text, gets a 422 and is not stored."
    ),
    responses={
        401: problem_content("The signature or token is missing or wrong; nothing was stored."),
        413: problem_content("The body is over the webhook limit (256 KiB by default)."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The platform's own payload (JSON, form-encoded or multipart); "
            "the signature covers its exact bytes.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "multipart/form-data": {"schema": {"type": "object"}},
            },
        }
    },
)
async def receive_webhook(request: Request, endpoint_id: EndpointId) -> WebhookAck:
    # The delivery and the metrics are read here rather than through dependencies, which
    # FastAPI resolves with measurable work on every request of this hot route.
    delivery = await inbound_delivery(request)
    reject_unstorable_text(delivery)
    state = request.app.state
    metrics: ServiceMetrics = state.metrics
    result = None
    tried = request.scope.get(webhook_ingest.FAST_PATH_TRIED_SCOPE_KEY, False)
    if state.webhook_endpoint_cache is not None and not tried:
        result = await webhook_ingest.receive_processed(
            state.webhook_ingest_writer, state.webhook_endpoint_cache, endpoint_id, delivery
        )
    if result is None:
        # The ORM path, for what the fast path does not cover. It commits at the end of the
        # block, like the session dependency of other routes.
        async with session_scope(state.sessionmaker) as session:
            endpoint = await webhook_service.find_endpoint(session, endpoint_id)
            try:
                result = await webhook_service.receive(session, endpoint, delivery)
            except InvalidSignatureError:
                metrics.record_delivery(endpoint.source, "rejected")
                raise
    # Both paths have committed here, so a delivery whose write fails is not counted.
    metrics.record_delivery(result.source, result.outcome)
    return result.ack


@platform_router.head(
    "/v1/webhooks/{endpoint_id}",
    operation_id="probe_webhook_head",
    summary="Answer SurveyMonkey's check that the webhook URL exists",
    response_class=Response,
    responses={200: {"description": "The endpoint exists."}},
)
@platform_router.get(
    "/v1/webhooks/{endpoint_id}",
    operation_id="probe_webhook_get",
    summary="Answer Qualtrics' check that the webhook URL exists",
    response_class=Response,
    responses={200: {"description": "The endpoint exists."}},
)
async def probe_webhook(session: SessionDep, endpoint_id: EndpointId) -> Response:
    await webhook_service.find_endpoint(session, endpoint_id)
    return Response(status_code=status.HTTP_200_OK)


@router.get("/v1/webhook-deliveries", summary="List stored webhook deliveries")
async def list_webhook_deliveries(
    session: SessionDep,
    tenant: ReadTenant,
    status: Annotated[
        DeliveryStatus | None, Query(description="Only deliveries with this status.")
    ] = None,
    endpoint_id: Annotated[str | None, Query(description="Only this endpoint's.")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[WebhookDeliveryRead]:
    deliveries, next_cursor = await webhook_service.list_deliveries(
        session, tenant, status=status, endpoint_id=endpoint_id, limit=limit, cursor=cursor
    )
    items = [_delivery_read(delivery) for delivery in deliveries]
    return Page[WebhookDeliveryRead](items=items, next_cursor=next_cursor)


@router.get("/v1/webhook-deliveries/{delivery_id}", summary="Get a stored webhook delivery")
async def get_webhook_delivery(
    session: SessionDep, tenant: ReadTenant, delivery_id: DeliveryId
) -> WebhookDeliveryRead:
    return _delivery_read(await webhook_service.get_delivery(session, tenant, delivery_id))


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/replay",
    summary="Map a stored delivery again with its endpoint's current settings",
)
async def replay_webhook_delivery(
    session: SessionDep, tenant: IngestTenant, delivery_id: DeliveryId
) -> WebhookAck:
    return await webhook_service.replay_delivery(session, tenant, delivery_id)


def receive_webhook_route() -> APIRoute:
    """Return the route of `POST /v1/webhooks/{endpoint_id}`."""
    return next(
        route
        for route in platform_router.routes
        if isinstance(route, APIRoute) and route.name == "receive_webhook"
    )


router.include_router(platform_router)
