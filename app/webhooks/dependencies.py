from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from app.errors import InvalidField, UnprocessableError
from app.routing import read_body_capped
from app.settings import Settings
from app.webhooks.adapters.base import InboundDelivery

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def inbound_delivery(request: Request) -> InboundDelivery:
    """Read the raw delivery: exact body bytes (413 over the webhook size cap), headers, query
    parameters and the arrival time from the app's clock (`app.state.clock`)."""
    body = await read_body_capped(request, _settings(request).webhook_max_body_bytes)
    clock: Clock = getattr(request.app.state, "clock", system_clock)
    return InboundDelivery(
        body=body,
        headers={name.lower(): value for name, value in request.headers.items()},
        # Most deliveries have no query string, so they skip building QueryParams.
        query=dict(request.query_params) if request.scope.get("query_string") else {},
        received_at=clock(),
    )


def text_encoding_problem(delivery: InboundDelivery) -> str | None:
    """Return why the body cannot be stored, when it contains a NUL byte outside a
    multipart body, or None.

    Text in UTF-16 or UTF-32 contains NUL bytes, and erasure searches stored bodies as
    UTF-8, so such a body is rejected before it is stored. Only multipart bodies may
    carry binary parts.
    """
    if b"\x00" not in delivery.body or delivery.content_type == "multipart/form-data":
        return None
    return (
        "the body contains a NUL byte, as UTF-16 or UTF-32 text does; "
        "send JSON and form bodies as UTF-8"
    )


def reject_unstorable_text(delivery: InboundDelivery) -> None:
    """Raise a 422 for a body that `text_encoding_problem` rejects."""
    problem = text_encoding_problem(delivery)
    if problem is not None:
        raise UnprocessableError(problem, errors=[InvalidField(location="body", message=problem)])


def webhook_url_builder(request: Request) -> Callable[[str], str]:
    """Build an endpoint's public URL, from REVCOV_PUBLIC_URL or else the request's host."""
    public_url = _settings(request).public_url

    def build(endpoint_id: str) -> str:
        path = request.app.url_path_for("receive_webhook", endpoint_id=endpoint_id)
        if public_url:
            return public_url.rstrip("/") + str(path)
        return str(request.url_for("receive_webhook", endpoint_id=endpoint_id))

    return build


WebhookUrl = Annotated[Callable[[str], str], Depends(webhook_url_builder)]


AppSettings = Annotated[Settings, Depends(_settings)]
