"""SatisMeter `completed` and `dismissed` webhooks.

SatisMeter signs nothing, so the endpoint's unguessable id protects it. An endpoint with a
`token` also requires that token, which SatisMeter sends when the webhook URL ends in
`?token=<token>`. Without a signature a changed body cannot be detected.

SatisMeter sends no delivery id, so the delivery key is the SHA-256 of the body: a retry of
the same bytes is a duplicate, and a changed body for the same response is processed.
`dismissed` (the survey was closed unanswered) carries no response and is ignored.
`response.created` is both the submission time and the version time. NOTE: SatisMeter
documents no update time, so a second `completed` for the same response with the same
`created` changes nothing.
"""

from typing import Any

from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    json_object,
    parse_timestamp,
    require_token,
    text_or_none,
)
from app.webhooks.errors import MappingError

RESPONSE_EVENT = "completed"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class SatisMeterAdapter:
    source = "satismeter"
    default_account_field = "companyId"
    event_type_field = "event"

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        require_token(delivery, endpoint)

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return f"sha256:{delivery.body_digest}"

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        if event_type != RESPONSE_EVENT:
            return MappedDelivery(event_type=event_type, response=None)

        response = payload.get("response")
        if not isinstance(response, dict):
            raise MappingError("response is missing or not an object")
        response_id = text_or_none(response.get("id"))
        if response_id is None:
            raise MappingError("response.id (the response id) is missing")
        created = parse_timestamp(
            response.get("created"), zone=endpoint.timezone, name="response.created"
        )

        user = _object(response.get("user"))
        traits = _object(user.get("traits"))
        mapped = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(traits.get(endpoint.account_field)),
            email=text_or_none(user.get("email")),
            score=response.get("rating"),
            comment=text_or_none(response.get("feedback")),
            submitted_at=created,
            updated_at=created,
        )
        return MappedDelivery(event_type=event_type, response=mapped)
