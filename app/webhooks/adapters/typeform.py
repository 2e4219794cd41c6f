"""Typeform `form_response` and `form_response_partial` webhooks.

Signature: `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>`, keyed with the
webhook secret as UTF-8. Typeform omits unanswered questions from `answers`, so a skipped
NPS question is a null score, never 0. `form_response.calculated.score` is the form's
quiz score, not the NPS answer, and is ignored.

A partial response shares its `token` with the full response sent later. The partial is
stored with a version time one microsecond before its `submitted_at` (or `landed_at`),
and the full one at its `submitted_at`, so the full response replaces the partial and a
partial retried after the full one changes nothing.
"""

import hashlib
from datetime import datetime, timedelta
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

SIGNATURE_HEADER = "typeform-signature"
NPS_FIELD_TYPES = ("opinion_scale", "nps")
RESPONSE_EVENTS = ("form_response", "form_response_partial")


def _answers(form_response: dict[str, Any]) -> list[dict[str, Any]]:
    answers = form_response.get("answers") or []
    if not isinstance(answers, list):
        raise MappingError("form_response.answers is not a list")
    return [answer for answer in answers if isinstance(answer, dict)]


def _field(answer: dict[str, Any]) -> dict[str, Any]:
    field = answer.get("field")
    return field if isinstance(field, dict) else {}


class TypeformAdapter:
    source = "typeform"
    default_account_field = "account_id"
    event_type_field = "event_type"

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        expected = [
            "sha256=" + value
            for value in base64_hmac(endpoint.secrets, delivery.body, hashlib.sha256)
        ]
        require_signature(
            delivery.headers.get(SIGNATURE_HEADER),
            expected,
            header="Typeform-Signature",
            platform="Typeform",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return json_field_key(delivery, "event_id")

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        if event_type not in RESPONSE_EVENTS:
            return MappedDelivery(event_type=event_type, response=None)

        form_response = payload.get("form_response")
        if not isinstance(form_response, dict):
            raise MappingError("form_response is missing or not an object")
        token = text_or_none(form_response.get("token"))
        if token is None:
            raise MappingError("form_response.token (the response id) is missing")

        answers = _answers(form_response)
        score = self._score(answers, endpoint)
        if event_type == "form_response_partial" and score is None:
            # A partial response counts only once it contains an NPS answer.
            return MappedDelivery(event_type=event_type, response=None)

        hidden = form_response.get("hidden")
        hidden = hidden if isinstance(hidden, dict) else {}
        submitted_at = self._submitted_at(form_response, endpoint)
        version = submitted_at
        if event_type == "form_response_partial":
            version = submitted_at - timedelta(microseconds=1)
        response = build_response(
            source=self.source,
            response_id=token,
            account_external_id=text_or_none(hidden.get(endpoint.account_field)),
            email=self._email(answers, hidden),
            score=score,
            comment=self._comment(answers, endpoint),
            submitted_at=submitted_at,
            updated_at=version,
        )
        return MappedDelivery(event_type=event_type, response=response)

    def _score(self, answers: list[dict[str, Any]], endpoint: EndpointConfig) -> int | None:
        if endpoint.score_field is not None:
            chosen = [a for a in answers if _field(a).get("ref") == endpoint.score_field]
        else:
            chosen = [a for a in answers if _field(a).get("type") in NPS_FIELD_TYPES]
        if not chosen:
            return None
        try:
            return parse_score(chosen[0].get("number"))
        except ValueError as error:
            raise MappingError(
                f"the NPS answer is invalid: {error}", log_reason="the NPS answer is invalid"
            ) from None

    def _comment(self, answers: list[dict[str, Any]], endpoint: EndpointConfig) -> str | None:
        if endpoint.comment_field is not None:
            chosen = [a for a in answers if _field(a).get("ref") == endpoint.comment_field]
        else:
            chosen = [a for a in answers if a.get("type") == "text"]
        return text_or_none(chosen[0].get("text")) if chosen else None

    def _email(self, answers: list[dict[str, Any]], hidden: dict[str, Any]) -> str | None:
        for answer in answers:
            if answer.get("type") == "email" and text_or_none(answer.get("email")):
                return text_or_none(answer.get("email"))
        return text_or_none(hidden.get("email"))

    def _submitted_at(self, form_response: dict[str, Any], endpoint: EndpointConfig) -> datetime:
        value = form_response.get("submitted_at") or form_response.get("landed_at")
        # Typeform sends ISO 8601 strings. `parse_timestamp` would read a number as Unix
        # seconds, which would store a wrong instant instead of failing the delivery.
        if value is not None and not isinstance(value, str):
            kind = {bool: "boolean", dict: "object", list: "array"}.get(type(value), "number")
            raise MappingError(
                f"form_response.submitted_at is a JSON {kind}, not an ISO 8601 string"
            )
        return parse_timestamp(value, zone=endpoint.timezone, name="form_response.submitted_at")
