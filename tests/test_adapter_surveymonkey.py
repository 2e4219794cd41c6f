"""SurveyMonkey webhooks through the HTTP API, from the recorded `response_completed` event
and the recorded response details, replayed by a local server."""

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.thin_payloads import (
    ReplayServer,
    Reply,
    fresh_moment,
    load_api_body,
    replay_server,
    run_pass,
)
from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("surveymonkey-response_completed")
SECRET = SAMPLE.signature["test_secret"]["hmac_key"]
API_BODY, API_META = load_api_body("surveymonkey-response_details.api")
EXPECTED = API_META["expected"]
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
EVENT = json.loads(SAMPLE.body)
SURVEY_ID = EVENT["resources"]["survey_id"]
# The sidecar names the request: "GET /v3/surveys/{survey_id}/responses/{id}/details".
DETAILS_PATH = API_META["event"].split(" ")[1].format(survey_id=SURVEY_ID, id=RESPONSE_ID)
SURVEY_PATH = f"/v3/surveys/{SURVEY_ID}/details"
NPS_QUESTION_ID = "301882001"
COMMENT_QUESTION_ID = "301882002"
CHOICE_MAP = {key: value for key, value in API_META["choice_map_needed"].items() if key[0] != "_"}
API_TOKEN = "surveymonkey-test-access-token"


def survey_details(
    labels: list[str] | None = None, first_choice_id: int = 2918374646
) -> dict[str, Any]:
    """Survey details for the sample's survey. Constructed, not recorded.

    It has the shape of `GET /v3/surveys/{id}/details`: `pages[].questions[]` with
    `answers.choices[]` holding `id`, `position` and `text`. The NPS question's 11 choices
    are labelled 0 to 10 unless `labels` gives other labels. With the default ids, choice
    2918374655 is the tenth, labelled 9, as the sample's sidecar maps it. Which `family`
    SurveyMonkey gives its NPS question was not verified, so the questions carry none.
    """
    labels = labels or [str(score) for score in range(11)]
    choices = [
        {
            "id": str(first_choice_id + position),
            "position": position + 1,
            "visible": True,
            "text": label,
        }
        for position, label in enumerate(labels)
    ]
    return {
        "id": SURVEY_ID,
        "title": "Customer NPS",
        "pages": [
            {
                "id": "77120044",
                "position": 1,
                "questions": [
                    {
                        "id": NPS_QUESTION_ID,
                        "position": 1,
                        "headings": [{"heading": "How likely are you to recommend us?"}],
                        "answers": {"choices": choices},
                    },
                    {
                        "id": COMMENT_QUESTION_ID,
                        "position": 2,
                        "headings": [{"heading": "Why?"}],
                    },
                ],
            }
        ],
    }


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with replay_server() as running:
        running.reply(DETAILS_PATH, Reply(200, API_BODY))
        running.reply(SURVEY_PATH, Reply(200, json.dumps(survey_details()).encode()))
        yield running


@pytest.fixture
def moment(set_clock: Callable[[datetime], None]) -> datetime:
    """The time deliveries arrive at and fetch passes run at, for this test alone."""
    now = fresh_moment()
    set_clock(now)
    return now


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha1).digest()).decode()
    return body, {**SAMPLE.headers, "Sm-Signature": signature}


def event(**fields: Any) -> dict[str, Any]:
    """The sample event with a new event_id and the given fields replaced."""
    payload: dict[str, Any] = copy.deepcopy(EVENT)
    payload["event_id"] = uuid.uuid4().hex
    payload.update(fields)
    return payload


def details_body(**fields: Any) -> bytes:
    payload = copy.deepcopy(json.loads(API_BODY))
    payload.update(fields)
    return json.dumps(payload).encode()


async def new_endpoint(api: httpx.AsyncClient, server: ReplayServer, **settings: Any) -> str:
    values = {"api_base_url": server.url, "api_token": API_TOKEN, "account_field": "acct"}
    endpoint = await create_endpoint(
        api, source="surveymonkey", secret=SECRET, **{**values, **settings}
    )
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def extraction(stored: dict[str, Any]) -> dict[str, Any]:
    extracted = {name: stored[name] for name in EXPECTED}
    extracted["submitted_at"] = datetime.fromisoformat(stored["submitted_at"])
    return extracted


def test_sidecars_agree_on_final_response() -> None:
    after_fetch = {
        name: value
        for name, value in SAMPLE.meta["expected_after_api_fetch"].items()
        if name not in ("fetch", "mock_file")
    }
    assert after_fetch == EXPECTED
    assert CHOICE_MAP == {"2918374655": 9}
    assert survey_details()["pages"][0]["questions"][0]["answers"]["choices"][9] == {
        "id": "2918374655",
        "position": 10,
        "visible": True,
        "text": "9",
    }


async def test_sample_pending_then_fetched(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    await api.put(
        f"/v1/accounts/{ACCOUNT}",
        json={
            "revenue": {
                "amount": "50000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
        },
    )

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    pending = await deliveries(api, "pending")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "pending"
    assert [item["id"] for item in pending] == [ack.json()["delivery_id"]]
    assert pending[0]["delivery_key"] == EVENT["event_id"]
    assert pending[0]["event_type"] == "response_completed"
    assert server.requests == []

    claimed = await run_pass(app, moment)
    stored = await stored_response(api, "surveymonkey", RESPONSE_ID)
    processed = await deliveries(api, "processed")
    coverage = await api.get("/v1/coverage", params={"period": "2026-03"})

    assert claimed == 1
    assert [request.path for request in server.requests] == [DETAILS_PATH, SURVEY_PATH]
    assert {request.headers["authorization"] for request in server.requests} == {
        f"Bearer {API_TOKEN}"
    }
    assert extraction(stored) == {
        **EXPECTED,
        "submitted_at": datetime.fromisoformat(EXPECTED["submitted_at"]),
    }
    assert datetime.fromisoformat(stored["updated_at"]) == datetime.fromisoformat(
        json.loads(API_BODY)["date_modified"]
    )
    assert [item["id"] for item in processed] == [ack.json()["delivery_id"]]
    assert processed[0]["response_id"] == RESPONSE_ID
    assert coverage.status_code == 200, coverage.text
    assert coverage.json()["accounts"] == {"total": 1, "covered": 1}


async def test_head_probe_answers_200(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    endpoint_id = await new_endpoint(api, server)

    probe = await client.head(f"/v1/webhooks/{endpoint_id}")

    assert probe.status_code == 200


async def test_one_byte_change_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    endpoint_id = await new_endpoint(api, server)

    statuses = set()
    for position in range(len(SAMPLE.body)):
        tampered = bytearray(SAMPLE.body)
        tampered[position] ^= 0x01
        ack = await post_delivery(client, endpoint_id, bytes(tampered), SAMPLE.headers)
        statuses.add(ack.status_code)

    assert statuses == {401}
    assert await deliveries(api) == []


async def test_missing_or_wrong_signature_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    endpoint_id = await new_endpoint(api, server)
    client_secret_only = SAMPLE.signature["test_secret"]["client_secret"].encode()
    wrong = base64.b64encode(hmac.new(client_secret_only, SAMPLE.body, hashlib.sha1).digest())
    headers = {key: value for key, value in SAMPLE.headers.items() if key != "Sm-Signature"}

    missing = await post_delivery(client, endpoint_id, SAMPLE.body, headers)
    mismatched = await post_delivery(
        client, endpoint_id, SAMPLE.body, {**headers, "Sm-Signature": wrong.decode()}
    )

    assert missing.status_code == 401
    assert mismatched.status_code == 401
    assert await deliveries(api) == []


async def test_duplicate_delivery_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer, moment: datetime
) -> None:
    endpoint_id = await new_endpoint(api, server)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)

    assert first.json()["status"] == "pending"
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert len(await deliveries(api)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"event_type": "collector_updated", "object_type": "collector"},
        {"event_type": "response_deleted"},
        {"event_type": "response_disqualified"},
    ],
)
async def test_other_events_ignored(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
    fields: dict[str, str],
) -> None:
    endpoint_id = await new_endpoint(api, server)
    body, headers = signed(event(**fields))

    ack = await post_delivery(client, endpoint_id, body, headers)
    ignored = await deliveries(api, "ignored")

    assert ack.status_code == 200
    assert ack.json()["status"] == "ignored"
    assert [item["event_type"] for item in ignored] == [fields["event_type"]]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event_datetime": "last Tuesday"}, "event_datetime"),
        ({"object_id": None}, "object_id"),
        ({"resources": {"respondent_id": RESPONSE_ID}}, "resources.survey_id"),
    ],
)
async def test_unmappable_event_failed(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
    fields: dict[str, Any],
    reason: str,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    body, headers = signed(event(**fields))

    ack = await post_delivery(client, endpoint_id, body, headers)

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert reason in ack.json()["detail"]


async def test_unfinished_response_without_score_ignored(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    first_page_only = details_body(
        response_status="partial",
        pages=[{"id": "77120044", "questions": []}],
    )
    server.reply(DETAILS_PATH, Reply(200, first_page_only))
    body, headers = signed(event(event_type="response_updated"))

    ack = await post_delivery(client, endpoint_id, body, headers)
    await run_pass(app, moment)
    ignored = await deliveries(api, "ignored")
    stored = await api.get(f"/v1/responses/surveymonkey/{RESPONSE_ID}")

    assert ack.json()["status"] == "pending"
    assert [item["id"] for item in ignored] == [ack.json()["delivery_id"]]
    assert stored.status_code == 404
    assert [request.path for request in server.requests] == [DETAILS_PATH]


async def test_unfinished_response_with_score_counts(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    server.reply(DETAILS_PATH, Reply(200, details_body(response_status="partial")))
    body, headers = signed(event(event_type="response_updated"))

    await post_delivery(client, endpoint_id, body, headers)
    await run_pass(app, moment)
    stored = await stored_response(api, "surveymonkey", RESPONSE_ID)

    assert stored["score"] == 9


async def test_preview_response_ignored(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    server.reply(DETAILS_PATH, Reply(200, details_body(collection_mode="survey_preview")))

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    ignored = await deliveries(api, "ignored")

    assert [item["id"] for item in ignored] == [ack.json()["delivery_id"]]


async def test_unlabelled_scale_mapped_by_position(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server, score_field=NPS_QUESTION_ID)
    labels = ["Not at all likely", *[""] * 9, "Extremely likely"]
    server.reply(SURVEY_PATH, Reply(200, json.dumps(survey_details(labels)).encode()))

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    stored = await stored_response(api, "surveymonkey", RESPONSE_ID)

    assert stored["score"] == 9


@pytest.mark.parametrize(
    ("survey", "endpoint_settings", "reason"),
    [
        (survey_details(["Yes", "No"]), {}, "Set score_field"),
        (survey_details(["Yes", "No"]), {"score_field": NPS_QUESTION_ID}, "not a 0-10 scale"),
        (survey_details(), {"score_field": "999"}, "has no question 999"),
        (survey_details(first_choice_id=1000), {}, "choice 2918374655 is not a choice"),
    ],
)
async def test_unmappable_choice_failed(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
    survey: dict[str, Any],
    endpoint_settings: dict[str, str],
    reason: str,
) -> None:
    endpoint_id = await new_endpoint(api, server, **endpoint_settings)
    server.reply(SURVEY_PATH, Reply(200, json.dumps(survey).encode()))

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    failed = await deliveries(api, "failed")

    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert reason in failed[0]["error"]


async def test_default_account_field_leaves_unmatched(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint = await create_endpoint(
        api, source="surveymonkey", secret=SECRET, api_base_url=server.url, api_token=API_TOKEN
    )

    await post_delivery(client, endpoint["id"], SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    unmatched = await api.get("/v1/responses", params={"matched": "false"})

    assert endpoint["account_field"] == "account_id"
    assert [item["response_id"] for item in unmatched.json()["items"]] == [RESPONSE_ID]
