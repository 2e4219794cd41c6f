"""Typeform `form_response` webhooks.

Signature: `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>`, keyed with the
webhook secret as UTF-8. Typeform omits unanswered questions from `answers`, so a skipped
NPS question is a null score, never 0. `form_response.calculated.score` is the form's
quiz score, not the NPS answer, and is ignored.
"""

import base64
import hashlib
import hmac
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from app.responses.schemas import ResponseIn, parse_score
from app.webhooks.adapters.base import EndpointConfig, InboundDelivery, MappedDelivery
from app.webhooks.errors import InvalidSignatureError, MappingError

SIGNATURE_HEADER = "typeform-signature"
NPS_FIELD_TYPES = ("opinion_scale", "nps")


def _load(delivery: InboundDelivery) -> Any:
    try:
        return json.loads(delivery.body, parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as error:
        raise MappingError(f"the body is not valid JSON: {error}") from None


def _answers(form_response: dict[str, Any]) -> list[dict[str, Any]]:
    answers = form_response.get("answers") or []
    if not isinstance(answers, list):
        raise MappingError("form_response.answers is not a list")
    return [answer for answer in answers if isinstance(answer, dict)]


def _field(answer: dict[str, Any]) -> dict[str, Any]:
    field = answer.get("field")
    return field if isinstance(field, dict) else {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class TypeformAdapter:
    source = "typeform"
    default_account_field = "account_id"

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        if endpoint.secret is None:
            return
        sent = delivery.headers.get(SIGNATURE_HEADER, "")
        digest = hmac.new(endpoint.secret.encode(), delivery.body, hashlib.sha256).digest()
        expected = "sha256=" + base64.b64encode(digest).decode()
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise InvalidSignatureError(
                "The Typeform-Signature header is missing or does not match the body; "
                "check that the webhook secret in Typeform equals this endpoint's secret."
            )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        try:
            event_id = json.loads(delivery.body).get("event_id")
        except (UnicodeDecodeError, ValueError, AttributeError):
            event_id = None
        return str(event_id) if event_id else f"sha256:{delivery.body_digest}"

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = _load(delivery)
        if not isinstance(payload, dict):
            raise MappingError("the body is not a JSON object")
        event_type = payload.get("event_type")
        if event_type != "form_response":
            return MappedDelivery(event_type=_text(event_type), response=None)

        form_response = payload.get("form_response")
        if not isinstance(form_response, dict):
            raise MappingError("form_response is missing or not an object")
        token = _text(form_response.get("token"))
        if token is None:
            raise MappingError("form_response.token (the response id) is missing")

        answers = _answers(form_response)
        hidden = form_response.get("hidden")
        hidden = hidden if isinstance(hidden, dict) else {}
        try:
            response = ResponseIn(
                source=self.source,
                response_id=token,
                account_external_id=_text(hidden.get(endpoint.account_field)),
                email=self._email(answers, hidden),
                score=self._score(answers, endpoint),
                comment=self._comment(answers, endpoint),
                submitted_at=self._submitted_at(form_response),
            )
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
                for item in error.errors()
            )
            raise MappingError(f"the response is invalid: {problems}") from None
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
            raise MappingError(f"the NPS answer is invalid: {error}") from None

    def _comment(self, answers: list[dict[str, Any]], endpoint: EndpointConfig) -> str | None:
        if endpoint.comment_field is not None:
            chosen = [a for a in answers if _field(a).get("ref") == endpoint.comment_field]
        else:
            chosen = [a for a in answers if a.get("type") == "text"]
        return _text(chosen[0].get("text")) if chosen else None

    def _email(self, answers: list[dict[str, Any]], hidden: dict[str, Any]) -> str | None:
        for answer in answers:
            if answer.get("type") == "email" and _text(answer.get("email")):
                return _text(answer.get("email"))
        return _text(hidden.get("email"))

    def _submitted_at(self, form_response: dict[str, Any]) -> datetime:
        value = form_response.get("submitted_at")
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise MappingError(
                f"form_response.submitted_at {value!r} is not an ISO 8601 timestamp"
            ) from None
        if moment.tzinfo is None:
            raise MappingError(f"form_response.submitted_at {value!r} has no UTC offset")
        return moment
