"""SurveyMonkey `response_created`, `response_updated` and `response_completed` webhooks, a
thin payload.

Signature: `Sm-Signature: <base64 HMAC-SHA1 of the raw body>`, keyed with the string
`<client_id>&<client_secret>` of the SurveyMonkey app, and the endpoint's secret is that
whole string. The body carries ids only (`event_id`, `object_id`, `resources.survey_id`).

The fetcher reads the response from `GET <api_base_url>/v3/surveys/<survey_id>/responses/
<response_id>/details` with `Authorization: Bearer <api_token>`. Its answers name choices
by id, so the NPS score needs the survey's question choices as well, from
`GET <api_base_url>/v3/surveys/<survey_id>/details`. A choice's score is its text when every
choice of the question is labelled with a whole number 0-10, and otherwise its place in an
11-choice scale. The account id is `custom_variables[<account_field>]`. The submission and
version time is the response's `date_modified`.
"""

import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from app.responses.schemas import ResponseIn, parse_score
from app.webhooks.adapters.base import (
    EndpointConfig,
    InboundDelivery,
    MappedDelivery,
    base64_hmac,
    build_response,
    json_field_key,
    json_object,
    parse_json_text,
    parse_timestamp,
    require_signature,
    text_or_none,
)
from app.webhooks.errors import MappingError

SIGNATURE_HEADER = "sm-signature"
RESPONSE_EVENTS = ("response_created", "response_updated", "response_completed")
DEFAULT_API_BASE_URL = "https://api.surveymonkey.com"
API_PATH = "/v3"
NPS_CHOICE_TEXTS = frozenset(str(score) for score in range(11))
# Responses taken in the survey's preview are tests, not feedback.
PREVIEW_MODES = frozenset({"preview", "survey_preview"})

# (question id, answer) pairs in the order of the response's pages.
Answers = list[tuple[str, dict[str, Any]]]


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _api_base_url(endpoint: EndpointConfig) -> str:
    base = (endpoint.api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
    return base.removesuffix(API_PATH)


def _api_token(endpoint: EndpointConfig) -> str:
    if endpoint.api_token is None:
        raise MappingError(
            "the endpoint's api_token is missing. Set a SurveyMonkey access token with the View "
            "Response Details and View Surveys scopes, then replay the delivery"
        )
    return endpoint.api_token


async def _get_json(client: httpx.AsyncClient, url: str, token: str) -> dict[str, Any]:
    api_response = await client.get(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    api_response.raise_for_status()
    try:
        payload = parse_json_text(api_response.content)
    except (ValueError, RecursionError) as error:
        raise MappingError(f"the SurveyMonkey API response is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MappingError(f"the SurveyMonkey API response from {url} is not a JSON object")
    return payload


def _answers(details: dict[str, Any]) -> Answers:
    return [
        (str(question.get("id")), answer)
        for page in _list(details.get("pages"))
        for question in _list(page.get("questions"))
        for answer in _list(question.get("answers"))
    ]


def _questions(survey: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(question.get("id")): question
        for page in _list(survey.get("pages"))
        for question in _list(page.get("questions"))
    }


def _position(choice: dict[str, Any]) -> int:
    position = choice.get("position")
    return position if isinstance(position, int) else 0


def _choices(question: dict[str, Any]) -> list[dict[str, Any]]:
    choices = _list(_object(question.get("answers")).get("choices"))
    return sorted(choices, key=_position)


def _text_score(choice: dict[str, Any]) -> int | None:
    """Return the whole number 0-10 that labels the choice, or None."""
    text = choice.get("text")
    if not isinstance(text, str):
        return None
    try:
        return parse_score(text)
    except ValueError:
        return None


def _is_nps_scale(question: dict[str, Any]) -> bool:
    """Return whether the question's choices are labelled exactly 0 to 10."""
    texts = [str(choice.get("text", "")).strip() for choice in _choices(question)]
    return len(texts) == len(NPS_CHOICE_TEXTS) and set(texts) == NPS_CHOICE_TEXTS


def _choice_scores(question: dict[str, Any]) -> dict[str, int]:
    """Map the question's choice ids to 0-10: by their text when every choice is labelled
    with a whole number 0-10, else by position when the question has 11 choices."""
    choices = _choices(question)
    by_text = {str(choice.get("id")): _text_score(choice) for choice in choices}
    if choices and None not in by_text.values():
        return {choice_id: score for choice_id, score in by_text.items() if score is not None}
    if len(choices) == len(NPS_CHOICE_TEXTS):
        return {str(choice.get("id")): position for position, choice in enumerate(choices)}
    raise MappingError(
        f"question {question.get('id')} is not a 0-10 scale, because its {len(choices)} choices "
        "are neither labelled 0 to 10 nor 11 in number. Set score_field to the NPS question's id"
    )


class SurveyMonkeyAdapter:
    source = "surveymonkey"
    default_account_field = "account_id"
    event_type_field = "event_type"

    def verify(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> None:
        require_signature(
            delivery.headers.get(SIGNATURE_HEADER),
            base64_hmac(endpoint.secrets, delivery.body, hashlib.sha1),
            header="Sm-Signature",
            platform="SurveyMonkey (client_id&client_secret of the app)",
        )

    def delivery_key(self, delivery: InboundDelivery) -> str:
        return json_field_key(delivery, "event_id")

    def map(self, delivery: InboundDelivery, endpoint: EndpointConfig) -> MappedDelivery:
        payload = json_object(delivery)
        event_type = text_or_none(payload.get(self.event_type_field))
        if payload.get("object_type") != "response" or event_type not in RESPONSE_EVENTS:
            return MappedDelivery(event_type=event_type, response=None)

        response_id = text_or_none(payload.get("object_id"))
        if response_id is None:
            raise MappingError("object_id (the response id) is missing")
        survey_id = text_or_none(_object(payload.get("resources")).get("survey_id"))
        if survey_id is None:
            raise MappingError("resources.survey_id is missing")
        event_at = parse_timestamp(
            payload.get("event_datetime"), zone=endpoint.timezone, name="event_datetime"
        )
        fetch = {
            "survey_id": survey_id,
            "response_id": response_id,
            "event_datetime": event_at.isoformat(),
        }
        return MappedDelivery(event_type=event_type, response=None, fetch=fetch)

    async def fetch(
        self, client: httpx.AsyncClient, fetch: dict[str, str], endpoint: EndpointConfig
    ) -> ResponseIn | None:
        """Fetch the response and, when it has choice answers, the survey's details.

        Returns None for a preview response, and for an unfinished one that has no NPS
        answer yet.
        """
        survey_id = fetch.get("survey_id")
        response_id = fetch.get("response_id")
        if not survey_id or not response_id:
            raise MappingError("the stored fetch is missing survey_id or response_id")
        survey_url = f"{_api_base_url(endpoint)}{API_PATH}/surveys/{quote(survey_id, safe='')}"
        token = _api_token(endpoint)
        details = await _get_json(
            client, f"{survey_url}/responses/{quote(response_id, safe='')}/details", token
        )
        # A value of any JSON type may arrive here; only a string can name a preview.
        collection_mode = details.get("collection_mode")
        if isinstance(collection_mode, str) and collection_mode in PREVIEW_MODES:
            return None

        answers = _answers(details)
        score, score_question = None, endpoint.score_field
        if any(answer.get("choice_id") for _, answer in answers):
            survey = await _get_json(client, f"{survey_url}/details", token)
            score, score_question = self._score(answers, survey, survey_id, endpoint)
        if score is None and details.get("response_status") != "completed":
            return None

        custom_variables = _object(details.get("custom_variables"))
        modified_at = self._modified_at(details, fetch, endpoint)
        return build_response(
            source=self.source,
            response_id=response_id,
            account_external_id=text_or_none(custom_variables.get(endpoint.account_field)),
            email=text_or_none(custom_variables.get("email")),
            score=score,
            comment=self._comment(answers, score_question, endpoint),
            submitted_at=modified_at,
            updated_at=modified_at,
        )

    def _score(
        self, answers: Answers, survey: dict[str, Any], survey_id: str, endpoint: EndpointConfig
    ) -> tuple[int | None, str]:
        """Return the NPS score and the NPS question's id: `score_field`, or else the first
        question whose choices are labelled 0 to 10."""
        questions = _questions(survey)
        question_id = endpoint.score_field
        if question_id is None:
            scales = [key for key, question in questions.items() if _is_nps_scale(question)]
            if not scales:
                raise MappingError(
                    f"survey {survey_id} has no question with choices labelled 0 to 10. "
                    "Set score_field to the NPS question's id"
                )
            question_id = scales[0]
        if question_id not in questions:
            raise MappingError(f"survey {survey_id} has no question {question_id}")

        chosen = [
            str(answer["choice_id"])
            for key, answer in answers
            if key == question_id and answer.get("choice_id")
        ]
        if not chosen:
            return None, question_id
        scores = _choice_scores(questions[question_id])
        if chosen[0] not in scores:
            raise MappingError(
                f"choice {chosen[0]} is not a choice of question {question_id} in survey "
                f"{survey_id}'s details"
            )
        return scores[chosen[0]], question_id

    def _comment(
        self, answers: Answers, score_question: str | None, endpoint: EndpointConfig
    ) -> str | None:
        """Return the first text answer of `comment_field`, or else of any question but the
        NPS one."""
        for question_id, answer in answers:
            if endpoint.comment_field is not None and question_id != endpoint.comment_field:
                continue
            if question_id == score_question or answer.get("row_id"):
                continue
            text = text_or_none(answer.get("text"))
            if text is not None:
                return text
        return None

    def _modified_at(
        self, details: dict[str, Any], fetch: dict[str, str], endpoint: EndpointConfig
    ) -> datetime:
        if details.get("date_modified") is not None:
            return parse_timestamp(
                details["date_modified"], zone=endpoint.timezone, name="date_modified"
            )
        return parse_timestamp(
            fetch.get("event_datetime"), zone=endpoint.timezone, name="event_datetime"
        )
