"""What every survey platform adapter implements, and the data it works on."""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from app.responses.schemas import ResponseIn


@dataclass(frozen=True)
class EndpointConfig:
    """The settings of one webhook endpoint that an adapter needs."""

    secret: str | None
    account_field: str
    score_field: str | None
    comment_field: str | None


@dataclass(frozen=True)
class InboundDelivery:
    """A delivery as received: the exact body bytes and lower-cased header names."""

    body: bytes
    headers: Mapping[str, str]

    @property
    def body_digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class MappedDelivery:
    """What a verified delivery means: its event type and its response, None when the
    event carries no response (test pings, dismissals)."""

    event_type: str | None
    response: ResponseIn | None


class Adapter(Protocol):
    source: str
    default_account_field: str

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        """Check the signature over the raw body; raise InvalidSignatureError when it fails."""

    def delivery_key(self, delivery: InboundDelivery) -> str:
        """Return the platform's id of this delivery, stable across its retries."""

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        """Turn the body into a response; raise MappingError with the reason when it cannot."""
