"""What every survey platform adapter implements, the data it works on, and shared helpers.

An adapter never touches the database or the HTTP layer: it verifies a signature over the
raw bytes, names the delivery, and maps the body to a `ResponseIn` (or says that the
event carries no response, or that the response must be fetched from the platform's API).
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError

from app.responses.schemas import ResponseIn
from app.routing import parse_json_decimal, parse_json_int
from app.webhooks.errors import InvalidSignatureError, MappingError


@dataclass(frozen=True)
class EndpointConfig:
    """The settings of one webhook endpoint that an adapter needs."""

    source: str
    secrets: tuple[str, ...] = field(repr=False)
    account_field: str
    score_field: str | None = None
    comment_field: str | None = None
    timezone: str = "UTC"
    token: str | None = field(default=None, repr=False)
    api_base_url: str | None = None
    api_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class InboundDelivery:
    """A delivery as received: exact body bytes, lower-cased header names, query parameters
    and the time it arrived (the service clock, which tests can set)."""

    body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    query: Mapping[str, str] = field(default_factory=dict)
    # The value that `parsed_json` returns, as the only element once it has parsed the body.
    _parsed_json: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def body_digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def parsed_json(self) -> Any:
        """Return the body parsed as JSON, with numbers as Decimal.

        Only the first call parses the body, so the delivery key and the mapping share one
        parse. Callers must not change the value, which they share too. Raises as
        `json.loads` does, and a call after a failure parses again.
        """
        if not self._parsed_json:
            parsed = parse_json_text(self.body)
            self._parsed_json.append(parsed)
        return self._parsed_json[0]

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json_text(text: str | bytes) -> Any:
    """Parse JSON from a platform with numbers as Decimal and int, within the limits that
    API bodies have.

    Raises ValueError with the reason, also for a number too long or with an exponent
    too large to read, and RecursionError for nesting too deep.
    """
    return json.loads(text, parse_float=parse_json_decimal, parse_int=parse_json_int)


@dataclass(frozen=True)
class MappedDelivery:
    """What a verified delivery means.

    `response` is None for events that carry no response (test pings, dismissals) and for
    thin payloads; `fetch` is set for thin payloads whose response must be fetched from the
    platform's API later, and names what to fetch.
    """

    event_type: str | None
    response: ResponseIn | None
    fetch: dict[str, str] | None = None


class Adapter(Protocol):
    source: str
    default_account_field: str

    @property
    def event_type_field(self) -> str | None:
        """Return the top-level key of a JSON body that names the event, or None where the
        platform puts the event elsewhere. A delivery that fails to map keeps this event type."""

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        """Check the signature over the raw body; raise InvalidSignatureError when it fails."""

    def delivery_key(self, delivery: InboundDelivery) -> str:
        """Return the platform's id of this delivery, stable across its retries."""

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        """Turn the body into a response; raise MappingError with the reason when it cannot."""


class FetchingAdapter(Adapter, Protocol):
    """An adapter for a thin payload, whose response is fetched from the platform's API."""

    async def fetch(
        self, client: httpx.AsyncClient, fetch: dict[str, str], endpoint: EndpointConfig
    ) -> ResponseIn | None:
        """Fetch and map the response named by `fetch`; raise MappingError when the API's
        answer cannot be mapped, and httpx.HTTPError to have the fetch retried later."""


# Signature helpers ---------------------------------------------------------------------


def hmac_digest(key: bytes | str, message: bytes, algorithm: Callable[..., Any]) -> bytes:
    key_bytes = key.encode() if isinstance(key, str) else key
    return hmac.new(key_bytes, message, algorithm).digest()


def matches_any(sent: str | None, expected: Iterable[str]) -> bool:
    """Compare `sent` with each expected signature in constant time."""
    if not sent:
        return False
    sent_bytes = sent.strip().encode()
    found = False
    for candidate in expected:
        # No early exit, so the time taken does not depend on which secret matched.
        found |= hmac.compare_digest(sent_bytes, candidate.encode())
    return found


def require_signature(
    sent: str | None,
    expected: Iterable[str],
    *,
    header: str,
    platform: str,
    mismatch: str = "does not match the body",
) -> None:
    """Raise InvalidSignatureError unless `sent` equals one of the `expected` signatures."""
    if not sent:
        # The platform signs only once a secret is set in its webhook settings.
        raise InvalidSignatureError(
            f"The {header} is missing; set a signing secret in {platform}'s webhook "
            "settings, equal to one of this endpoint's secrets."
        )
    if not matches_any(sent, expected):
        raise InvalidSignatureError(
            f"The {header} {mismatch}; check that the secret configured in {platform} "
            "equals one of this endpoint's secrets."
        )


def base64_hmac(secrets: Iterable[str], message: bytes, algorithm: Callable[..., Any]) -> list[str]:
    return [base64.b64encode(hmac_digest(s, message, algorithm)).decode() for s in secrets]


def hex_hmac(secrets: Iterable[str], message: bytes, algorithm: Callable[..., Any]) -> list[str]:
    return [hmac_digest(s, message, algorithm).hex() for s in secrets]


def require_token(delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
    """For platforms that sign nothing: when the endpoint has a token, require it in the
    `token` query parameter or an `X-Revcov-Token` header."""
    if endpoint.token is None:
        return
    sent = delivery.query.get("token") or delivery.headers.get("x-revcov-token")
    require_signature(
        sent, [endpoint.token], header="token", platform=endpoint.source, mismatch="is wrong"
    )


# Payload helpers -----------------------------------------------------------------------


def load_json(delivery: InboundDelivery) -> Any:
    """Return the parsed body (`InboundDelivery.parsed_json`); raise MappingError when it is
    not JSON."""
    try:
        return delivery.parsed_json()
    except (UnicodeDecodeError, ValueError) as error:
        raise MappingError(f"the body is not valid JSON: {error}") from None


def json_object(delivery: InboundDelivery) -> dict[str, Any]:
    payload = load_json(delivery)
    if not isinstance(payload, dict):
        raise MappingError("the body is not a JSON object")
    return payload


def json_field_key(delivery: InboundDelivery, field: str) -> str:
    """Return a top-level field of a JSON body as the delivery key, or the body's digest
    when the body is not JSON or lacks the field. Numbers keep their exact text."""
    try:
        payload = delivery.parsed_json()
    except (UnicodeDecodeError, ValueError, RecursionError):
        payload = None
    value = payload.get(field) if isinstance(payload, dict) else None
    if value is None or value == "" or isinstance(value, (dict, list)):
        return f"sha256:{delivery.body_digest}"
    return str(value)


def text_or_none(value: Any) -> str | None:
    """Return a stripped string, or None for null and blank values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_timestamp(value: Any, *, zone: str, name: str) -> datetime:
    """Parse the timestamp shapes platforms send, reading zone-less ones in `zone`.

    Accepts ISO 8601 (`Z`, offsets, fractions), `YYYY-MM-DD HH:MM:SS -0700`, and Unix
    seconds as a number or a string of digits. Raises MappingError naming the field.
    """
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return _from_unix_seconds(value, name)
    text = text_or_none(value)
    if text is None:
        raise MappingError(f"{name} is missing")
    if text.isdigit():
        return _from_unix_seconds(int(text), name)
    moment = None
    for candidate in (text, text.replace("Z", "+00:00")):
        try:
            moment = datetime.fromisoformat(candidate)
            break
        except ValueError:
            continue
    if moment is None:
        try:
            moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            raise MappingError(
                f"{name} {text!r} is not a timestamp", log_reason=f"{name} is not a timestamp"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment


def _from_unix_seconds(value: int | Decimal, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), tz=ZoneInfo("UTC"))
    except (OverflowError, OSError, ValueError):
        raise MappingError(
            f"{name} {value} is not a Unix time in seconds",
            log_reason=f"{name} is not a Unix time in seconds",
        ) from None


def build_response(**fields: Any) -> ResponseIn:
    """Build a ResponseIn from extracted fields; a field that fails validation (a score
    outside 0-10, an over-long id) raises MappingError with the reason."""
    try:
        return ResponseIn(**fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise MappingError(
            f"the response is invalid: {problems}", log_reason="the response is invalid"
        ) from None
