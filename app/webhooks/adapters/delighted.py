"""Delighted `survey_response.created` and `survey_response.updated` webhooks.

Signature: `X-Delighted-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, keyed
with the project's private API key. NOTE: this scheme is taken from third-party client code,
not from Delighted's own documentation.

Delighted sends `created` when the score is clicked and `updated` when the comment follows,
both with the same `event_data.id`. The version time is `event_data.updated_at` (Unix
seconds), so an older `updated` retried after a newer one changes nothing. A `created`
event is versioned one microsecond earlier, because `updated_at` has whole seconds and an
`updated` of the same second must still win.
"""

import hashlib
from datetime import timedelta
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

SIGNATURE_HEADER = "x-delighted-webhook-signature"
CREATED_EVENT = "survey_response.created"
RESPONSE_EVENTS = (CREATED_EVENT, "survey_response.updated")
# Delighted's other survey types, such as CSAT and CES, use scales other than 0-10.
NPS_SURVEY_TYPE = "nps"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class DelightedAdapter:
    source = "delighted"
    default_account_field = "Company ID"
    event_type_field = "event_type"

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        expected = [
            "sha256=" + value for value in hex_hmac(endpoint.secrets, delivery.body, hashlib.sha256)
        ]
        require_signature(
            delivery.headers.get(SIGNATURE_HEADER),
            expected,
            header="X-Delighted-Webhook-Signature",
            platform="Delighted",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return json_field_key(delivery, "event_id")

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        if event_type not in RESPONSE_EVENTS:
            return MappedDelivery(event_type=event_type, response=None)

        data = payload.get("event_data")
        if not isinstance(data, dict):
            raise MappingError("event_data is missing or not an object")
        response_id = text_or_none(data.get("id"))
        if response_id is None:
            raise MappingError("event_data.id (the response id) is missing")
        survey_type = text_or_none(data.get("survey_type"))
        if survey_type is not None and survey_type != NPS_SURVEY_TYPE:
            raise MappingError(
                f"event_data.survey_type is {survey_type!r}, but only NPS survey responses "
                "(scores 0-10) can be stored"
            )

        submitted_at = parse_timestamp(
            data.get("created_at"), zone=endpoint.timezone, name="event_data.created_at"
        )
        version = submitted_at
        if data.get("updated_at") is not None:
            version = parse_timestamp(
                data["updated_at"], zone=endpoint.timezone, name="event_data.updated_at"
            )
        if event_type == CREATED_EVENT:
            version -= timedelta(microseconds=1)

        # person_properties is null when the person has none, and its keys may contain spaces.
        properties = _object(data.get("person_properties"))
        response = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(properties.get(endpoint.account_field)),
            email=text_or_none(_object(data.get("person")).get("email")),
            score=data.get("score"),
            comment=text_or_none(data.get("comment")),
            submitted_at=submitted_at,
            updated_at=version,
        )
        return MappedDelivery(event_type=event_type, response=response)
