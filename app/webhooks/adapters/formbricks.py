"""Formbricks `responseCreated`, `responseUpdated` and `responseFinished` webhooks.

Formbricks signs with Standard Webhooks; `webhook-id` differs per event, so the three
events of one response are three deliveries of the response `data.id`. Each carries the
whole response so far, and `data.updatedAt` is its version and submitted time, so an
older event arriving late changes nothing. Other events, such as the `testEndpoint`
ping of the webhook settings page, carry no response.

Answers and hidden fields share the map `data.data`, keyed by question or hidden field
id, and Formbricks leaves out the key of a skipped question, so a missing score key is a
null score. The payload does not say which question is the NPS one: its id is random
unless renamed in the editor, and other questions (ratings, numeric hidden fields) may
also hold whole numbers from 0 to 10. So `score_field` has no default, and a response
event on an endpoint without it fails with a reason until it is set and the delivery
is replayed. The comment is read only when `comment_field` is set.
"""

from typing import Any

from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    json_object,
    parse_timestamp,
    text_or_none,
)
from app.webhooks.adapters.standard_webhooks import (
    generate_secret,
    message_id_key,
    verify_standard_webhook,
)
from app.webhooks.errors import MappingError

RESPONSE_EVENTS = ("responseCreated", "responseUpdated", "responseFinished")
EMAIL_FIELD = "email"


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError(f"{name} is not an object")
    return value


class FormbricksAdapter:
    source = "formbricks"
    default_account_field = "account_id"
    event_type_field = "event"
    generate_secret = staticmethod(generate_secret)

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        verify_standard_webhook(delivery, endpoint, platform="Formbricks")

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return message_id_key(delivery)

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        if event_type not in RESPONSE_EVENTS:
            return MappedDelivery(event_type=event_type, response=None)

        response = payload.get("data")
        if not isinstance(response, dict):
            raise MappingError("data (the response) is missing or not an object")
        response_id = text_or_none(response.get("id"))
        if response_id is None:
            raise MappingError("data.id (the response id) is missing")
        if endpoint.score_field is None:
            raise MappingError(
                "the endpoint has no score_field; set it to the id of the survey's NPS "
                "question (Formbricks shows it in the question's advanced settings), "
                "then replay this delivery"
            )
        answers = _object(response.get("data"), "data.data")
        # Identified contacts of app surveys carry their attributes here; link surveys send null.
        attributes = _object(response.get("contactAttributes"), "data.contactAttributes")

        updated_at = parse_timestamp(
            response.get("updatedAt"), zone=endpoint.timezone, name="data.updatedAt"
        )
        comment = answers.get(endpoint.comment_field) if endpoint.comment_field else None
        mapped = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(
                answers.get(endpoint.account_field) or attributes.get(endpoint.account_field)
            ),
            email=text_or_none(answers.get(EMAIL_FIELD) or attributes.get(EMAIL_FIELD)),
            score=answers.get(endpoint.score_field),
            comment=text_or_none(comment),
            submitted_at=updated_at,
            updated_at=updated_at,
        )
        return MappedDelivery(event_type=event_type, response=mapped)
