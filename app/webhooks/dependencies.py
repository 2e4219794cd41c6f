from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from app.routing import read_body_capped
from app.settings import Settings
from app.webhooks.adapters.base import InboundDelivery


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def inbound_delivery(request: Request) -> InboundDelivery:
    """The raw delivery: exact body bytes (413 over the webhook size cap) and headers."""
    body = await read_body_capped(request, _settings(request).webhook_max_body_bytes)
    headers = {name.lower(): value for name, value in request.headers.items()}
    return InboundDelivery(body=body, headers=headers)


def webhook_url_builder(request: Request) -> Callable[[str], str]:
    """Build an endpoint's public URL, from REVCOV_PUBLIC_URL or else the request's host."""
    public_url = _settings(request).public_url

    def build(endpoint_id: str) -> str:
        path = request.app.url_path_for("receive_webhook", endpoint_id=endpoint_id)
        if public_url:
            return public_url.rstrip("/") + str(path)
        return str(request.url_for("receive_webhook", endpoint_id=endpoint_id))

    return build


Delivery = Annotated[InboundDelivery, Depends(inbound_delivery)]
WebhookUrl = Annotated[Callable[[str], str], Depends(webhook_url_builder)]
