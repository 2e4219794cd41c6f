"""Jotform form-submission webhooks.

Jotform posts `multipart/form-data` and signs nothing, so the endpoint is protected by its
unguessable id and, when set, by the endpoint's `token` in the URL (`?token=`). The
answers are a JSON string in the `rawRequest` part, keyed `q<question id>_<field name>`,
and every answer is a string. The `pretty` part is never read, because it joins
`Label:value` pairs with `, ` and so breaks on answers that contain either.
`submissionID` is both the response id and the delivery id. Jotform sends no submission
time, so the response is dated by its arrival at this service.

`score_field`, `comment_field` and `account_field` name the `<field name>` part of the key.
Jotform builds a field name from the first two words of the question's label (recorded
deliveries show it), so the defaults are the names of the usual NPS wording: `howLikely`
("How likely are you to recommend us?"), `whatIs` ("What is the main reason for your
score?") and `accountId` (a hidden field labelled "Account ID"). The email is read from
`email`. Recorded deliveries carry unanswered questions as empty strings, so an empty
score is a skipped question (null), while a form without the score field at all fails
the delivery with a reason.
"""

import email.parser
import email.policy
import json
import re
from typing import Any

from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    parse_json_text,
    require_token,
    text_or_none,
)
from app.webhooks.errors import MappingError

MULTIPART = "multipart/form-data"
ANSWER_KEY = re.compile(r"q(\d+)_(.+)")
DEFAULT_SCORE_FIELD = "howLikely"
DEFAULT_COMMENT_FIELD = "whatIs"
EMAIL_FIELD = "email"


def _form_parts(delivery: InboundDelivery) -> dict[str, bytes]:
    """Split the multipart body into its parts' raw bytes by name."""
    if delivery.content_type != MULTIPART:
        raise MappingError(
            f"the content type is {delivery.content_type or 'missing'!r}, not {MULTIPART}"
        )
    content_type = delivery.headers["content-type"].encode("latin-1", errors="replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n" + delivery.body
    )
    if not message.is_multipart():
        raise MappingError("the multipart body does not match its boundary")
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.setdefault(name, payload)
    return parts


def _part_text(parts: dict[str, bytes], name: str) -> str | None:
    if name not in parts:
        return None
    try:
        return parts[name].decode("utf-8")
    except UnicodeDecodeError:
        raise MappingError(f"the {name} part is not valid UTF-8") from None


def _answers_by_field(parts: dict[str, bytes]) -> dict[str, Any]:
    """Parse `rawRequest` and key its answers by field name; the first question wins when
    two share a name."""
    raw = _part_text(parts, "rawRequest")
    if raw is None:
        raise MappingError("the rawRequest part (the answers) is missing")
    try:
        request = parse_json_text(raw)
    except (ValueError, RecursionError) as error:
        raise MappingError(f"rawRequest is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise MappingError("rawRequest is not a JSON object")
    answers: dict[str, Any] = {}
    for key, value in request.items():
        match = ANSWER_KEY.fullmatch(key)
        if match is not None:
            answers.setdefault(match[2], value)
    return answers


def _text_answer(answers: dict[str, Any], field: str) -> str | None:
    """Return a text answer; compound answers (name, address, date objects) are rejected."""
    value = answers.get(field)
    if isinstance(value, (dict, list)):
        raise MappingError(
            f"the {field} answer is not a single value: {json.dumps(value)[:200]}",
            log_reason=f"the {field} answer is not a single value",
        )
    return text_or_none(value)


class JotformAdapter:
    source = "jotform"
    default_account_field = "accountId"
    event_type_field = None

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        require_token(delivery, endpoint)

    def delivery_key(self, delivery: InboundDelivery) -> str:
        try:
            submission_id = _part_text(_form_parts(delivery), "submissionID")
        except MappingError:
            submission_id = None
        return text_or_none(submission_id) or f"sha256:{delivery.body_digest}"

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        parts = _form_parts(delivery)
        submission_id = text_or_none(_part_text(parts, "submissionID"))
        if submission_id is None:
            raise MappingError("the submissionID part (the response id) is missing")
        answers = _answers_by_field(parts)

        score_field = endpoint.score_field or DEFAULT_SCORE_FIELD
        if score_field not in answers:
            raise MappingError(
                f"rawRequest has no q<id>_{score_field} answer; set score_field to the NPS "
                "question's field name (the part after q<id>_), then replay this delivery"
            )
        score = answers[score_field]
        response = build_response(
            source=self.source,
            response_id=submission_id,
            account_external_id=_text_answer(answers, endpoint.account_field),
            email=_text_answer(answers, EMAIL_FIELD),
            score=None if score == "" else score,
            comment=_text_answer(answers, endpoint.comment_field or DEFAULT_COMMENT_FIELD),
            submitted_at=delivery.received_at,
        )
        return MappedDelivery(event_type=None, response=response)
