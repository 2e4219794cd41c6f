"""Qualtrics event subscriptions through the HTTP API, from the recorded
`completedResponse` request and the recorded API response, replayed by a local server."""

import asyncio
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from fastapi import FastAPI

from app.webhooks.adapters.base import EndpointConfig, InboundDelivery
from app.webhooks.adapters.qualtrics import QualtricsAdapter
from tests.thin_payloads import (
    ReplayServer,
    Reply,
    fresh_moment,
    load_api_body,
    replay_server,
    run_pass,
)
from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("qualtrics-completedResponse")
SECRET = SAMPLE.signature["test_secret"]
API_BODY, API_META = load_api_body("qualtrics-response.api")
EXPECTED = API_META["expected"]
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
MESSAGE = json.loads(parse_qs(SAMPLE.body.decode())["MSG"][0])
TOPIC = "exampleco.surveyengine.completedResponse.SV_3xYzAbCdEf12345"
# The sidecar names the request: "GET /API/v3/surveys/{SurveyID}/responses/{ResponseID}".
API_PATH = (
    API_META["event"]
    .split(" ")[1]
    .format(SurveyID=MESSAGE["SurveyID"], ResponseID=MESSAGE["ResponseID"])
)
API_TOKEN = "qualtrics-test-api-token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with replay_server() as running:
        running.reply(API_PATH, Reply(200, API_BODY))
        yield running


@pytest.fixture
def moment(set_clock: Callable[[datetime], None]) -> datetime:
    """The time deliveries arrive at and fetch passes run at, for this test alone."""
    now = fresh_moment()
    set_clock(now)
    return now


def signed_form(message: dict[str, Any] | str, *, topic: str = TOPIC) -> bytes:
    """A form body as Qualtrics sends it, signed with the sample's shared key."""
    text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
    signature = hmac.new(SECRET.encode(), text.encode(), hashlib.sha512).hexdigest()
    return urlencode({"HMAC": signature, "MSG": text, "Topic": topic}).encode()


def api_body(**values: Any) -> bytes:
    """The recorded API response with `result.values` fields replaced (None removes one)."""
    payload = copy.deepcopy(json.loads(API_BODY))
    for name, value in values.items():
        if value is None:
            payload["result"]["values"].pop(name, None)
        else:
            payload["result"]["values"][name] = value
    return json.dumps(payload).encode()


async def new_endpoint(api: httpx.AsyncClient, server: ReplayServer, **settings: Any) -> str:
    values = {"api_base_url": server.url, "api_token": API_TOKEN, **settings}
    endpoint = await create_endpoint(api, source="qualtrics", secret=SECRET, **values)
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


EXPECTED_EXTRACTION = {**EXPECTED, "submitted_at": datetime.fromisoformat(EXPECTED["submitted_at"])}


def test_sidecars_agree_on_final_response() -> None:
    assert SAMPLE.meta["expected_after_api_fetch"]["mock_file"] == API_META["body_file"]
    after_fetch = {
        name: value
        for name, value in SAMPLE.meta["expected_after_api_fetch"].items()
        if name not in ("fetch", "mock_file")
    }
    assert after_fetch == EXPECTED


def test_map_extracts_thin_sidecar_fields() -> None:
    thin = SAMPLE.expected
    delivery = InboundDelivery(body=SAMPLE.body, headers=FORM, received_at=datetime.now(UTC))
    endpoint = EndpointConfig(source="qualtrics", secrets=(SECRET,), account_field="account_id")

    mapped = QualtricsAdapter().map(delivery, endpoint)

    assert mapped.response is None
    assert mapped.event_type == TOPIC
    assert mapped.fetch == {
        "survey_id": MESSAGE["SurveyID"],
        "response_id": thin["response_id"],
        "completed_at": thin["submitted_at"],
    }
    assert [thin[name] for name in ("score", "comment", "email", "account_external_id")] == [
        None,
        None,
        None,
        None,
    ]


def test_completed_date_read_in_endpoint_zone() -> None:
    delivery = InboundDelivery(body=SAMPLE.body, headers=FORM, received_at=datetime.now(UTC))
    endpoint = EndpointConfig(
        source="qualtrics",
        secrets=(SECRET,),
        account_field="account_id",
        timezone="America/Chicago",
    )

    mapped = QualtricsAdapter().map(delivery, endpoint)

    assert mapped.fetch is not None
    assert mapped.fetch["completed_at"] == "2026-03-16T11:05:42-05:00"


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
                "amount": "80000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
        },
    )

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    pending = await deliveries(api, "pending")
    before = await api.get(f"/v1/responses/qualtrics/{RESPONSE_ID}")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "pending"
    assert [item["id"] for item in pending] == [ack.json()["delivery_id"]]
    assert pending[0]["event_type"] == TOPIC
    assert pending[0]["attempts"] == 0
    assert datetime.fromisoformat(pending[0]["next_attempt_at"]) == moment
    assert before.status_code == 404
    assert server.requests == []

    claimed = await run_pass(app, moment)
    stored = await stored_response(api, "qualtrics", RESPONSE_ID)
    processed = await deliveries(api, "processed")
    coverage = await api.get("/v1/coverage", params={"period": "2026-03"})

    assert claimed == 1
    assert [request.path for request in server.requests] == [API_PATH]
    assert server.requests[0].headers["x-api-token"] == API_TOKEN
    assert extraction(stored) == EXPECTED_EXTRACTION
    assert [item["id"] for item in processed] == [ack.json()["delivery_id"]]
    assert processed[0]["response_id"] == RESPONSE_ID
    assert processed[0]["attempts"] == 1
    assert processed[0]["error"] is None
    assert await deliveries(api, "pending") == []
    assert coverage.status_code == 200, coverage.text
    assert coverage.json()["accounts"] == {"total": 1, "covered": 1}


async def test_completed_date_as_fallback(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server, timezone="America/Chicago")
    server.reply(API_PATH, Reply(200, api_body(recordedDate=None)))

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    stored = await stored_response(api, "qualtrics", RESPONSE_ID)

    assert datetime.fromisoformat(stored["submitted_at"]) == datetime(
        2026, 3, 16, 16, 5, 42, tzinfo=UTC
    )


async def test_one_byte_change_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    endpoint_id = await new_endpoint(api, server)
    # The HMAC covers MSG only: every byte up to and including the `&` before Topic.
    signed_length = SAMPLE.body.index(b"&Topic=") + 1

    statuses = set()
    for position in range(signed_length):
        tampered = bytearray(SAMPLE.body)
        tampered[position] ^= 0x01
        ack = await post_delivery(client, endpoint_id, bytes(tampered), SAMPLE.headers)
        statuses.add(ack.status_code)

    assert statuses == {401}
    assert await deliveries(api) == []


async def test_missing_or_wrong_hmac_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    endpoint_id = await new_endpoint(api, server)
    text = json.dumps(MESSAGE)
    unsigned = urlencode({"MSG": text, "Topic": TOPIC}).encode()
    wrong_key = hmac.new(b"another-shared-key", text.encode(), hashlib.sha512).hexdigest()
    wrongly_signed = urlencode({"HMAC": wrong_key, "MSG": text, "Topic": TOPIC}).encode()

    missing = await post_delivery(client, endpoint_id, unsigned, FORM)
    wrong = await post_delivery(client, endpoint_id, wrongly_signed, FORM)

    assert missing.status_code == 401
    assert "missing" in missing.json()["detail"]
    assert wrong.status_code == 401
    assert await deliveries(api) == []


async def test_duplicate_delivery_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer, moment: datetime
) -> None:
    endpoint_id = await new_endpoint(api, server)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    stored = await deliveries(api)

    assert first.json()["status"] == "pending"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert [item["delivery_key"] for item in stored] == [f"{TOPIC}:{RESPONSE_ID}"]


async def test_other_topic_ignored(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer, moment: datetime
) -> None:
    endpoint_id = await new_endpoint(api, server)
    topic = "exampleco.controlpanel.activateSurvey"

    ack = await post_delivery(client, endpoint_id, signed_form(MESSAGE, topic=topic), FORM)
    ignored = await deliveries(api, "ignored")

    assert ack.status_code == 200
    assert ack.json()["status"] == "ignored"
    assert [item["event_type"] for item in ignored] == [topic]
    assert await deliveries(api, "pending") == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({**MESSAGE, "CompletedDate": "16/03/2026 11:05"}, "MSG.CompletedDate"),
        ({**MESSAGE, "ResponseID": None}, "MSG.ResponseID is missing"),
        ("{not json", "MSG form field is not valid JSON"),
        ("[1, 2]", "MSG form field is not a JSON object"),
    ],
)
async def test_unmappable_message_failed(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
    message: dict[str, Any] | str,
    reason: str,
) -> None:
    endpoint_id = await new_endpoint(api, server)

    ack = await post_delivery(client, endpoint_id, signed_form(message), FORM)
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert reason in failed[0]["error"]


async def test_score_field_setting_used(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(
        api, server, score_field="QID7", comment_field="QID8_TEXT", account_field="plan"
    )
    server.reply(API_PATH, Reply(200, api_body(QID7=4, QID8_TEXT="Too slow.")))

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await api.put("/v1/accounts/Enterprise", json={})
    await run_pass(app, moment)
    stored = await stored_response(api, "qualtrics", RESPONSE_ID)

    assert stored["score"] == 4
    assert stored["comment"] == "Too slow."
    assert stored["account_external_id"] == "Enterprise"


async def test_skipped_nps_question_null_score(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    server.reply(API_PATH, Reply(200, api_body(QID1=None, QID1_NPS_GROUP=None)))

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    stored = await stored_response(api, "qualtrics", RESPONSE_ID)

    assert stored["score"] is None
    assert stored["comment"] == EXPECTED["comment"]


@pytest.mark.parametrize("score", [11, -1, "nine", 8.5])
async def test_invalid_fetched_score_failed(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
    score: object,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    server.reply(API_PATH, Reply(200, api_body(QID1=score)))

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    failed = await deliveries(api, "failed")
    stored = await api.get(f"/v1/responses/qualtrics/{RESPONSE_ID}")

    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "result.values.QID1" in failed[0]["error"]
    assert stored.status_code == 404


async def test_missing_api_token_failed(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint = await create_endpoint(
        api, source="qualtrics", secret=SECRET, api_base_url=server.url
    )

    await post_delivery(client, endpoint["id"], SAMPLE.body, SAMPLE.headers)
    await run_pass(app, moment)
    failed = await deliveries(api, "failed")

    assert len(failed) == 1
    assert "api_token" in failed[0]["error"]
    assert server.requests == []


async def test_get_probe_answers_200(
    api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    endpoint_id = await new_endpoint(api, server)

    probe = await client.get(f"/v1/webhooks/{endpoint_id}")

    assert probe.status_code == 200


async def test_erasure_before_fetch_holds(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, server: ReplayServer
) -> None:
    # Received and erased on the real clock, because the erasure is timed by the database.
    endpoint_id = await new_endpoint(api, server)
    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)

    erased = await api.post("/v1/privacy/erase", json={"email": EXPECTED["email"].upper()})
    # The app's own fetcher runs on the real clock too, and a delivery it has claimed is
    # skipped by this pass until it is done, so passes repeat until the response is stored.
    deadline = time.monotonic() + 30
    while True:
        await run_pass(app, datetime.now(UTC) + timedelta(seconds=1))
        found = await api.get(f"/v1/responses/qualtrics/{RESPONSE_ID}")
        if found.status_code != 404 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    stored = await stored_response(api, "qualtrics", RESPONSE_ID)

    assert erased.status_code == 200, erased.text
    assert stored["email"] is None
    assert stored["comment"] is None
    assert stored["score"] == EXPECTED["score"]


async def test_slow_api_times_out(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, server)
    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    server.delay = 1.5

    await run_pass(app, moment, webhook_fetch_timeout_seconds=0.3)
    pending = await deliveries(api, "pending")

    assert len(pending) == 1
    assert pending[0]["attempts"] == 1
    assert "did not answer within 0.3 seconds" in pending[0]["error"]


@pytest.mark.parametrize("token", ["token\n", "tok en", "tökën"])
async def test_api_token_header_safe(
    api: httpx.AsyncClient, server: ReplayServer, token: str
) -> None:
    created = await api.post(
        "/v1/webhook-endpoints",
        json={
            "source": "qualtrics",
            "secret": SECRET,
            "api_base_url": server.url,
            "api_token": token,
        },
    )

    assert created.status_code == 422
    assert token not in created.text
