"""Qualtrics event subscriptions (`surveyengine.completedResponse.<SurveyID>`), a thin payload.

Qualtrics posts `application/x-www-form-urlencoded` fields: `Topic` (prefixed with the
brand id), `MSG` (a JSON string with `ResponseID`, `SurveyID`, `CompletedDate`...) and
`HMAC`, the lower-case hex HMAC-SHA512 of the URL-decoded `MSG`, keyed with the
subscription's `sharedKey`. The signature covers `MSG` only, so `Topic` is not protected.

The event names the response but contains no answers. The adapter stores it as pending with
the survey and response ids, and the fetcher then reads the response from
`GET <api_base_url>/API/v3/surveys/<SurveyID>/responses/<ResponseID>` with the endpoint's
`X-API-TOKEN`. `CompletedDate` has no zone and is read in the endpoint's time zone; it is
the submission time only when the API response lacks `recordedDate`.
"""

import hashlib
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

import httpx

from app.responses.schemas import ResponseIn, parse_score
from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    build_response,
    hex_hmac,
    parse_json_text,
    parse_timestamp,
    require_signature,
    text_or_none,
)
from app.webhooks.errors import MappingError

# Only this event announces a finished response. Events with other topics are ignored.
COMPLETED_RESPONSE_TOPIC = "completedResponse"
API_PATH = "/API/v3"
NPS_GROUP_SUFFIX = "_NPS_GROUP"
# Qualtrics names the text entry of question n `QIDn_TEXT`.
TEXT_ANSWER_KEY = re.compile(r"QID\d+_TEXT")


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}


def _single(form: dict[str, list[str]], name: str) -> str | None:
    """Return a form field sent exactly once, or None when it is missing or repeated."""
    values = form.get(name, [])
    return values[0] if len(values) == 1 else None


def _message(form: dict[str, list[str]]) -> dict[str, Any]:
    text = _single(form, "MSG")
    if text is None:
        raise MappingError("the MSG form field is missing or sent more than once")
    try:
        message = parse_json_text(text)
    except (ValueError, RecursionError) as error:
        raise MappingError(f"the MSG form field is not valid JSON: {error}") from None
    if not isinstance(message, dict):
        raise MappingError("the MSG form field is not a JSON object")
    return message


def _api_base_url(endpoint: EndpointConfig) -> str:
    if endpoint.api_base_url is None:
        raise MappingError(
            "the endpoint's api_base_url is missing. Set it to the data center URL, such as "
            "https://yul1.qualtrics.com, then replay the delivery"
        )
    base = endpoint.api_base_url.rstrip("/")
    return base.removesuffix(API_PATH)


def _api_token(endpoint: EndpointConfig) -> str:
    if endpoint.api_token is None:
        raise MappingError(
            "the endpoint's api_token is missing. Set a Qualtrics API token, then replay the "
            "delivery"
        )
    return endpoint.api_token


class QualtricsAdapter:
    source = "qualtrics"
    default_account_field = "account_id"
    event_type_field = None

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        form = _form(delivery.body)
        message = _single(form, "MSG")
        sent = _single(form, "HMAC")
        expected = (
            [] if message is None else hex_hmac(endpoint.secrets, message.encode(), hashlib.sha512)
        )
        require_signature(
            sent.lower() if sent else None,
            expected,
            header="HMAC form field",
            platform="Qualtrics (the subscription's sharedKey)",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        """Return `<Topic>:<ResponseID>`, because Qualtrics sends no delivery id."""
        form = _form(delivery.body)
        topic = _single(form, "Topic")
        try:
            response_id = parse_json_text(_single(form, "MSG") or "").get("ResponseID")
        except (ValueError, RecursionError, AttributeError):
            response_id = None
        if topic and response_id:
            return f"{topic}:{response_id}"
        return f"sha256:{delivery.body_digest}"

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        form = _form(delivery.body)
        topic = text_or_none(_single(form, "Topic"))
        if topic is None:
            raise MappingError("the Topic form field is missing or sent more than once")
        if COMPLETED_RESPONSE_TOPIC not in topic.split("."):
            return MappedDelivery(event_type=topic, response=None)

        message = _message(form)
        response_id = text_or_none(message.get("ResponseID"))
        if response_id is None:
            raise MappingError("MSG.ResponseID is missing")
        survey_id = text_or_none(message.get("SurveyID"))
        if survey_id is None:
            raise MappingError("MSG.SurveyID is missing")
        completed_at = parse_timestamp(
            message.get("CompletedDate"), zone=endpoint.timezone, name="MSG.CompletedDate"
        )
        fetch = {
            "survey_id": survey_id,
            "response_id": response_id,
            "completed_at": completed_at.isoformat(),
        }
        return MappedDelivery(event_type=topic, response=None, fetch=fetch)

    async def fetch(
        self, client: httpx.AsyncClient, fetch: dict[str, str], endpoint: EndpointConfig
    ) -> ResponseIn | None:
        survey_id = fetch.get("survey_id")
        response_id = fetch.get("response_id")
        if not survey_id or not response_id:
            raise MappingError("the stored fetch is missing survey_id or response_id")
        url = (
            f"{_api_base_url(endpoint)}{API_PATH}/surveys/{quote(survey_id, safe='')}"
            f"/responses/{quote(response_id, safe='')}"
        )
        api_response = await client.get(
            url, headers={"X-API-TOKEN": _api_token(endpoint), "Accept": "application/json"}
        )
        api_response.raise_for_status()

        try:
            payload = parse_json_text(api_response.content)
        except (ValueError, RecursionError) as error:
            raise MappingError(f"the Qualtrics API response is not valid JSON: {error}") from None
        result = payload.get("result") if isinstance(payload, dict) else None
        values = result.get("values") if isinstance(result, dict) else None
        if not isinstance(values, dict):
            raise MappingError("the Qualtrics API response has no result.values object")

        return build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(values.get(endpoint.account_field)),
            email=text_or_none(values.get("recipientEmail")) or text_or_none(values.get("email")),
            score=self._score(values, endpoint),
            comment=self._comment(values, endpoint),
            submitted_at=self._submitted_at(values, fetch, endpoint),
        )

    def _score(self, values: dict[str, Any], endpoint: EndpointConfig) -> int | None:
        """Read the NPS answer: `score_field`, or else the question that has a `_NPS_GROUP`
        value. A skipped question has no key, which is a null score."""
        key = endpoint.score_field
        if key is None:
            groups = [name for name in values if name.endswith(NPS_GROUP_SUFFIX)]
            if not groups:
                return None
            key = groups[0].removesuffix(NPS_GROUP_SUFFIX)
        try:
            return parse_score(values.get(key))
        except ValueError as error:
            raise MappingError(
                f"result.values.{key} is invalid: {error}",
                log_reason=f"result.values.{key} is invalid",
            ) from None

    def _comment(self, values: dict[str, Any], endpoint: EndpointConfig) -> str | None:
        if endpoint.comment_field is not None:
            return text_or_none(values.get(endpoint.comment_field))
        for name, value in values.items():
            if TEXT_ANSWER_KEY.fullmatch(name):
                return text_or_none(value)
        return None

    def _submitted_at(
        self, values: dict[str, Any], fetch: dict[str, str], endpoint: EndpointConfig
    ) -> datetime:
        if values.get("recordedDate") is not None:
            return parse_timestamp(
                values["recordedDate"], zone=endpoint.timezone, name="result.values.recordedDate"
            )
        return parse_timestamp(
            fetch.get("completed_at"), zone=endpoint.timezone, name="MSG.CompletedDate"
        )
