"""Wootric (InMoment) outgoing webhooks: `response created`, `response updated` and
`decline created`.

The body is `application/x-www-form-urlencoded` with Rails-style keys such as
`response[end_user_properties][company_id]`; the adapter reads them as flat names.
Signature: `X-Wootric-Signature: sha1=<hex HMAC-SHA1 of the raw body>`, keyed with the
account's secret token. Every value is a string, the score included; an empty
`response[text]` means no comment, and timestamps look like `2026-03-17 09:12:44 -0700`.
A decline (the survey dismissed) sends `decline[...]` keys instead and carries no response.

`response[created_at]` is the submitted time and `response[updated_at]` the version, so
an `updated` event arriving before its `created` is not undone by it. The account id is
read from the end-user property named by `account_field`. `score_field` and
`comment_field` are not used, because Wootric always sends `response[score]` and
`response[text]`.
"""

import hashlib
import urllib.parse

from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    hex_hmac,
    parse_timestamp,
    require_signature,
    text_or_none,
)
from app.webhooks.errors import MappingError

SIGNATURE_HEADER = "x-wootric-signature"
RECORD_KINDS = ("response", "decline")


def _form_fields(body: bytes) -> dict[str, str]:
    """Parse the form body into a flat dict; a repeated name keeps its last value, as Rack
    (the Rails request parser) does."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MappingError("the form body is not valid UTF-8") from None
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


def _event_type(kind: str, event_name: str | None) -> str:
    """Name the event as Wootric does, such as `response updated` or `decline created`."""
    return f"{kind} {event_name}" if event_name else kind


class WootricAdapter:
    source = "wootric"
    default_account_field = "account_id"
    event_type_field = None

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        expected = [
            "sha1=" + value for value in hex_hmac(endpoint.secrets, delivery.body, hashlib.sha1)
        ]
        require_signature(
            delivery.headers.get(SIGNATURE_HEADER),
            expected,
            header="X-Wootric-Signature",
            platform="Wootric",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        """Build `<kind>:<event_name>:<id>:<updated_at>`, because Wootric sends no delivery id.

        A retry repeats all four parts. `created` and `updated` of one response differ in
        the event name, and two updates differ in `updated_at`. The body's own
        `timestamp` is left out, since it may be the time of the attempt rather than of
        the event, and would then make each retry look new.
        """
        try:
            fields = _form_fields(delivery.body)
        except MappingError:
            fields = {}
        for kind in RECORD_KINDS:
            record_id = fields.get(f"{kind}[id]")
            if record_id:
                event_name = fields.get("event_name", "")
                updated_at = fields.get(f"{kind}[updated_at]", "")
                # NOTE: two updates of one response within the same second share a key, so
                # the second is acknowledged as a duplicate. Its equal updated_at would not
                # replace the first version anyway.
                return f"{kind}:{event_name}:{record_id}:{updated_at}"
        return f"sha256:{delivery.body_digest}"

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        fields = _form_fields(delivery.body)
        event_name = text_or_none(fields.get("event_name"))
        if "response[id]" not in fields:
            if any(name.startswith("decline[") for name in fields):
                return MappedDelivery(event_type=_event_type("decline", event_name), response=None)
            raise MappingError("the body has neither response[...] nor decline[...] fields")
        response_id = text_or_none(fields["response[id]"])
        if response_id is None:
            raise MappingError("response[id] is empty")

        submitted_at = parse_timestamp(
            fields.get("response[created_at]"), zone=endpoint.timezone, name="response[created_at]"
        )
        updated_at = submitted_at
        if text_or_none(fields.get("response[updated_at]")) is not None:
            updated_at = parse_timestamp(
                fields["response[updated_at]"], zone=endpoint.timezone, name="response[updated_at]"
            )
        # NOTE: response[excluded_from_calculations] is not read, so a response that a
        # Wootric admin excluded from its NPS still counts here.
        account = fields.get(f"response[end_user_properties][{endpoint.account_field}]")
        response = build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(account),
            email=text_or_none(fields.get("response[email]")),
            score=text_or_none(fields.get("response[score]")),
            comment=text_or_none(fields.get("response[text]")),
            submitted_at=submitted_at,
            updated_at=updated_at,
        )
        return MappedDelivery(event_type=_event_type("response", event_name), response=response)
