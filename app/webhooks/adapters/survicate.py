"""Survicate `questionAnswered` webhooks.

Signature: `Hmac: <lowercase hex HMAC-SHA256 of the raw body>`, keyed with the workspace's
signing secret. The plain `Token` header that Survicate also sends is not checked, because
the HMAC already proves the sender. The delivery id is `messageId`, because the body changes
between attempts (`deliveryTries` counts them) and a body hash cannot identify a delivery.

Survicate sends one event per answered question, all with the same `responseUuid`. Only the
NPS question's event becomes a response. The others are acknowledged as ignored, so a later
answer to another question cannot replace the stored score with null. The NPS question is
the one whose `question.id` or text equals `score_field`, or else the one whose
`choice.body` is promoter, passive or detractor. Its score is `choice.id`, its comment
`choice.comment`, and its `timestamp` is both the submission time and the version time, so
an earlier answer to the NPS question, retried late, does not replace a later one.
"""

import hashlib
from typing import Any

from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    hex_hmac,
    json_field_key,
    json_object,
    parse_timestamp,
    require_signature,
    text_or_none,
)
from app.webhooks.errors import MappingError

SIGNATURE_HEADER = "hmac"
ANSWER_EVENT = "questionAnswered"
NPS_CATEGORIES = ("promoter", "passive", "detractor")
EMAIL_ATTRIBUTE = "email"


def _object(value: Any) -> dict[str, Any]:
    """Return the value when it is a JSON object; Survicate sends `[]` for empty ones."""
    return value if isinstance(value, dict) else {}


class SurvicateAdapter:
    source = "survicate"
    default_account_field = "account_id"
    event_type_field = None

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        require_signature(
            delivery.headers.get(SIGNATURE_HEADER),
            hex_hmac(endpoint.secrets, delivery.body, hashlib.sha256),
            header="Hmac",
            platform="Survicate",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return json_field_key(delivery, "messageId")

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event = payload.get("event")
        if not isinstance(event, dict) or not event:
            raise MappingError("event is missing or not an object")
        if ANSWER_EVENT not in event:
            # NOTE: surveyCompleted is acknowledged as ignored, because its payload was not
            # documented in enough detail to map. questionAnswered carries every answer.
            return MappedDelivery(event_type=next(iter(event)), response=None)

        answered = event[ANSWER_EVENT]
        if not isinstance(answered, dict):
            raise MappingError("event.questionAnswered is not an object")
        question = _object(answered.get("question"))
        choice = _object(answered.get("choice"))
        if not self._is_nps_question(question, choice, endpoint):
            return MappedDelivery(event_type=ANSWER_EVENT, response=None)

        response_id = text_or_none(answered.get("responseUuid"))
        if response_id is None:
            raise MappingError("event.questionAnswered.responseUuid (the response id) is missing")
        answered_at = parse_timestamp(
            answered.get("timestamp"),
            zone=endpoint.timezone,
            name="event.questionAnswered.timestamp",
        )
        attributes = _object(_object(answered.get("respondent")).get("attributes"))
        response = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(attributes.get(endpoint.account_field)),
            email=text_or_none(attributes.get(EMAIL_ATTRIBUTE)),
            score=choice.get("id"),
            comment=text_or_none(choice.get("comment")),
            submitted_at=answered_at,
            updated_at=answered_at,
        )
        return MappedDelivery(event_type=ANSWER_EVENT, response=response)

    def _is_nps_question(
        self, question: dict[str, Any], choice: dict[str, Any], endpoint: EndpointConfig
    ) -> bool:
        if endpoint.score_field is not None:
            names = (text_or_none(question.get("id")), text_or_none(question.get("body")))
            return endpoint.score_field in names
        category = text_or_none(choice.get("body"))
        return category is not None and category.lower() in NPS_CATEGORIES
