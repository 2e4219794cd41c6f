"""Tally `FORM_RESPONSE` webhooks.

Signature: `Tally-Signature: <base64 HMAC-SHA256 of the raw body>`, keyed with the form's
signing secret, with no prefix and no timestamp.

Answers arrive as a `data.fields` list. Hidden fields are matched by `label`, because
their `key` carries a random suffix. The score is the field whose key or label equals
`score_field`, or else the first LINEAR_SCALE field, or else the first RATING field; a
form without that field is a failed delivery.
Choice fields (MULTIPLE_CHOICE, DROPDOWN) send option ids, which are resolved to the
option text through the field's `options`.

The version time is the event's own `createdAt`, so an event retried after a newer event
for the same `responseId` changes nothing.
"""

import hashlib
from typing import Any

from app.responses.schemas import parse_score
from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    base64_hmac,
    build_response,
    json_field_key,
    json_object,
    parse_timestamp,
    require_signature,
    text_or_none,
)
from app.webhooks.errors import MappingError

SIGNATURE_HEADER = "tally-signature"
RESPONSE_EVENT = "FORM_RESPONSE"
HIDDEN_FIELD_TYPE = "HIDDEN_FIELDS"
EMAIL_FIELD_TYPE = "INPUT_EMAIL"
EMAIL_HIDDEN_FIELD = "email"
# In order of preference when no score_field is set.
SCORE_FIELD_TYPES = ("LINEAR_SCALE", "RATING")
COMMENT_FIELD_TYPES = ("TEXTAREA", "INPUT_TEXT")


def _fields(data: dict[str, Any]) -> list[dict[str, Any]]:
    fields = data.get("fields") or []
    if not isinstance(fields, list):
        raise MappingError("data.fields is not a list")
    return [field for field in fields if isinstance(field, dict)]


def _find_field(
    fields: list[dict[str, Any]], name: str | None, types: tuple[str, ...]
) -> dict[str, Any] | None:
    """Return the field whose key or label is `name`, or else the first field of the
    earliest listed type."""
    if name is not None:
        named = [field for field in fields if name in (field.get("key"), field.get("label"))]
        return named[0] if named else None
    for field_type in types:
        typed = [field for field in fields if field.get("type") == field_type]
        if typed:
            return typed[0]
    return None


def _answer(field: dict[str, Any]) -> Any:
    """Return the field's value, with choice option ids replaced by the options' text."""
    value = field.get("value")
    if not isinstance(value, list):
        return value
    options = field.get("options") or []
    texts = {
        option.get("id"): option.get("text")
        for option in options
        if isinstance(option, dict) and isinstance(option.get("id"), str)
    }
    chosen = [texts.get(item, item) if isinstance(item, str) else item for item in value]
    if len(chosen) == 1:
        return chosen[0]
    return ", ".join(str(item) for item in chosen) or None


class TallyAdapter:
    source = "tally"
    default_account_field = "account_id"
    event_type_field = "eventType"

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        require_signature(
            delivery.headers.get(SIGNATURE_HEADER),
            base64_hmac(endpoint.secrets, delivery.body, hashlib.sha256),
            header="Tally-Signature",
            platform="Tally",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return json_field_key(delivery, "eventId")

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        if event_type != RESPONSE_EVENT:
            return MappedDelivery(event_type=event_type, response=None)

        data = payload.get("data")
        if not isinstance(data, dict):
            raise MappingError("data is missing or not an object")
        response_id = text_or_none(data.get("responseId") or data.get("submissionId"))
        if response_id is None:
            raise MappingError("data.responseId (the response id) is missing")

        fields = _fields(data)
        hidden = {
            field.get("label"): field.get("value")
            for field in fields
            if field.get("type") == HIDDEN_FIELD_TYPE and isinstance(field.get("label"), str)
        }
        submitted_at = parse_timestamp(
            data.get("createdAt"), zone=endpoint.timezone, name="data.createdAt"
        )
        version = submitted_at
        if payload.get("createdAt") is not None:
            version = parse_timestamp(
                payload["createdAt"], zone=endpoint.timezone, name="createdAt"
            )

        response = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(hidden.get(endpoint.account_field)),
            email=self._email(fields, hidden),
            score=self._score(fields, endpoint),
            comment=self._comment(fields, endpoint),
            submitted_at=submitted_at,
            updated_at=version,
        )
        return MappedDelivery(event_type=event_type, response=response)

    def _score(self, fields: list[dict[str, Any]], endpoint: EndpointConfig) -> int | None:
        field = _find_field(fields, endpoint.score_field, SCORE_FIELD_TYPES)
        # NOTE: a missing field is a mapping error and a null value a skipped question, on
        # the unconfirmed assumption that Tally sends unanswered fields with a null value.
        if field is None:
            if endpoint.score_field is not None:
                missing = f"field with the key or label {endpoint.score_field!r} (score_field)"
            else:
                missing = "LINEAR_SCALE or RATING field, and no score_field is set"
            raise MappingError(f"the NPS question is missing: the form has no {missing}")
        try:
            return parse_score(_answer(field))
        except ValueError as error:
            label = field.get("label") or field.get("key")
            raise MappingError(
                f"the NPS answer {label!r} is invalid: {error}",
                log_reason="the NPS answer is invalid",
            ) from None

    def _comment(self, fields: list[dict[str, Any]], endpoint: EndpointConfig) -> str | None:
        field = _find_field(fields, endpoint.comment_field, COMMENT_FIELD_TYPES)
        return text_or_none(_answer(field)) if field is not None else None

    def _email(self, fields: list[dict[str, Any]], hidden: dict[Any, Any]) -> str | None:
        for field in fields:
            if field.get("type") == EMAIL_FIELD_TYPE and text_or_none(field.get("value")):
                return text_or_none(field.get("value"))
        return text_or_none(hidden.get(EMAIL_HIDDEN_FIELD))
