"""Standard Webhooks signature checks, and the adapter for any sender that signs with that
scheme and posts the `{type, timestamp, data}` envelope.

The scheme (Standard Webhooks spec v1.0.0, and its reference Python library) sends three
headers: `webhook-id` (the same on every retry of one message), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature`, a space-separated list of
`v1,<base64 HMAC-SHA256>` entries over `<webhook-id>.<webhook-timestamp>.<raw body>`.
The HMAC key is the base64-decoded part of a `whsec_<base64>` secret, not the string.
The header contains several entries while the sender rotates its secret, and one match
is enough. `v1a` (ed25519) entries are not supported and never match.
"""

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from datetime import datetime, timedelta

from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    json_object,
    matches_any,
    parse_timestamp,
    text_or_none,
)
from app.webhooks.errors import InvalidSignatureError, MappingError

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# The reference libraries accept a timestamp up to 5 minutes either side of their clock.
TOLERANCE = timedelta(minutes=5)


def generate_secret() -> str:
    """Generate a new `whsec_` secret of 32 random bytes, as Standard Webhooks senders expect."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes | None:
    """Decode a `whsec_` secret (the prefix is optional) into its HMAC key bytes.

    Returns None when the rest is not base64, so such a secret can match nothing.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return None


def sign(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """Return the base64 `v1` signature of one message, without the `v1,` prefix."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check_timestamp(timestamp: str, received_at: datetime, *, platform: str) -> None:
    """Raise InvalidSignatureError unless `timestamp` is Unix seconds within the tolerance
    of `received_at`, the service clock, in either direction."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise InvalidSignatureError(
            f"The {TIMESTAMP_HEADER} header {timestamp[:40]!r} is not Unix seconds."
        )
    # Integer arithmetic, because a float conversion of a huge header value would overflow.
    offset = int(timestamp) - math.floor(received_at.timestamp())
    if abs(offset) > TOLERANCE.total_seconds():
        raise InvalidSignatureError(
            f"The {TIMESTAMP_HEADER} header is {offset:+d} seconds from this service's "
            f"clock, outside the {TOLERANCE.total_seconds() / 60:.0f}-minute tolerance; "
            f"check the clocks of {platform} and of this service."
        )


def verify_standard_webhook(
    delivery: InboundDelivery, endpoint: EndpointConfig, *, platform: str
) -> None:
    """Raise InvalidSignatureError unless the delivery carries all three Standard Webhooks
    headers, a timestamp within the tolerance, and a `v1` signature made with one of the
    endpoint's secrets."""
    message_id = delivery.headers.get(ID_HEADER)
    timestamp = delivery.headers.get(TIMESTAMP_HEADER)
    sent = delivery.headers.get(SIGNATURE_HEADER)
    if not message_id or not timestamp or not sent:
        missing = [
            name
            for name, value in (
                (ID_HEADER, message_id),
                (TIMESTAMP_HEADER, timestamp),
                (SIGNATURE_HEADER, sent),
            )
            if not value
        ]
        plural = "s" if len(missing) > 1 else ""
        raise InvalidSignatureError(
            f"The delivery lacks the {', '.join(missing)} header{plural}; {platform} must "
            "sign its deliveries with Standard Webhooks and a signing secret."
        )

    check_timestamp(timestamp, delivery.received_at, platform=platform)

    keys = [key for key in map(secret_key, endpoint.secrets) if key is not None]
    if not keys:
        raise InvalidSignatureError(
            f"No secret of this endpoint is a {SECRET_PREFIX}<base64> secret; set the "
            f"endpoint's secret to the one {platform} shows for its webhook."
        )
    expected = [sign(key, message_id, timestamp, delivery.body) for key in keys]
    found = False
    for entry in sent.split():
        version, _, signature = entry.partition(",")
        # No early exit, so the time taken does not depend on which entry matched.
        found |= version == SIGNATURE_VERSION and matches_any(signature, expected)
    if not found:
        raise InvalidSignatureError(
            f"No {SIGNATURE_VERSION} signature in the {SIGNATURE_HEADER} header matches "
            f"the body; check that the secret configured in {platform} equals one of "
            "this endpoint's secrets."
        )


def message_id_key(delivery: InboundDelivery) -> str:
    """Return the `webhook-id` header, which the sender keeps on every retry of a message."""
    return delivery.headers.get(ID_HEADER) or f"sha256:{delivery.body_digest}"


class StandardWebhooksAdapter:
    """Any sender that signs with Standard Webhooks and posts `{type, timestamp, data}`,
    where `data` carries `id`, `score`, `comment`, `email` and the account id.

    Every event is read as a version of the response `data.id`. The envelope's
    `timestamp` (when the event happened) is both its submitted time and its version, so
    an older event arriving late changes nothing. A `data` without the score key is a
    skipped question (null score). `score_field`, `comment_field` and `account_field`
    name other keys of `data`.
    """

    source = "standard-webhooks"
    default_account_field = "account_id"
    event_type_field = "type"
    default_score_field = "score"
    default_comment_field = "comment"
    generate_secret = staticmethod(generate_secret)

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        verify_standard_webhook(delivery, endpoint, platform="the sender")

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return message_id_key(delivery)

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise MappingError("data is missing or not an object")
        response_id = text_or_none(data.get("id"))
        if response_id is None:
            raise MappingError("data.id (the response id) is missing")

        submitted_at = parse_timestamp(
            payload.get("timestamp"), zone=endpoint.timezone, name="timestamp"
        )
        response = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(data.get(endpoint.account_field)),
            email=text_or_none(data.get("email")),
            score=data.get(endpoint.score_field or self.default_score_field),
            comment=text_or_none(data.get(endpoint.comment_field or self.default_comment_field)),
            submitted_at=submitted_at,
            updated_at=submitted_at,
        )
        return MappedDelivery(event_type=event_type, response=response)
