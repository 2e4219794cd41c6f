from typing import Annotated

from fastapi import APIRouter, Path, status

from app.db.session import SessionDep
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import CurrentTenant
from app.webhooks import service as webhook_service
from app.webhooks.dependencies import Delivery, WebhookUrl
from app.webhooks.models import WebhookEndpoint
from app.webhooks.schemas import (
    WebhookAck,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
)

router = APIRouter(tags=["webhooks"], route_class=ServiceRoute)


def _endpoint_fields(endpoint: WebhookEndpoint, url: WebhookUrl) -> dict[str, object]:
    return {
        "id": endpoint.id,
        "source": endpoint.source,
        "url": url(endpoint.id),
        "account_field": endpoint.account_field,
        "score_field": endpoint.score_field,
        "comment_field": endpoint.comment_field,
        "created_at": endpoint.created_at,
    }


@router.post(
    "/v1/webhook-endpoints",
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook endpoint for a survey platform",
)
async def create_webhook_endpoint(
    session: SessionDep, tenant: CurrentTenant, body: WebhookEndpointCreate, url: WebhookUrl
) -> WebhookEndpointCreated:
    endpoint = await webhook_service.create_endpoint(session, tenant, body)
    return WebhookEndpointCreated.model_validate(
        {**_endpoint_fields(endpoint, url), "secret": endpoint.secret}
    )


@router.get("/v1/webhook-endpoints", summary="List webhook endpoints (without secrets)")
async def list_webhook_endpoints(
    session: SessionDep,
    tenant: CurrentTenant,
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


@router.post(
    "/v1/webhooks/{endpoint_id}",
    name="receive_webhook",
    summary="Receive a delivery from a survey platform",
    description=(
        "Called by the survey platform, not by API clients: no API key, the platform's "
        "signature instead. 200 means the delivery is stored; 401 means the signature "
        "failed and nothing was stored."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The platform's own payload; the signature covers its exact bytes.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def receive_webhook(
    session: SessionDep,
    endpoint_id: Annotated[str, Path(max_length=200)],
    delivery: Delivery,
) -> WebhookAck:
    endpoint = await webhook_service.find_endpoint(session, endpoint_id)
    return await webhook_service.receive(session, endpoint, delivery)
