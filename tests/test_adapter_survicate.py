"""Survicate webhooks through the HTTP API, from the recorded `questionAnswered` on an NPS
question."""

import copy
import hashlib
import hmac
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("survicate-question_answered")
SECRET = SAMPLE.signature["test_secret"]
TOKEN = SAMPLE.signature["test_verification_token"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]


def answer(timestamp: str | None = None, **choice: Any) -> dict[str, Any]:
    """The sample with a new messageId and, when given, a new timestamp and choice fields."""
    payload: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.body))
    payload["messageId"] = uuid.uuid4().hex
    answered = payload["event"]["questionAnswered"]
    if timestamp is not None:
        answered["timestamp"] = timestamp
    answered["choice"].update(choice)
    return payload


def other_question(timestamp: str) -> dict[str, Any]:
    """An answer to a rating question of the same response."""
    payload = answer(timestamp, id=21573, body="Great", comment=None)
    payload["event"]["questionAnswered"]["question"] = {
        "id": 12123,
        "body": "How would you rate our customer service?",
    }
    return payload


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "Token": TOKEN,
        "Hmac": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, headers


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    endpoint = await create_endpoint(api, source="survicate", secret=SECRET, **settings)
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def send(
    client: httpx.AsyncClient, endpoint_id: str, payload: dict[str, Any]
) -> httpx.Response:
    body, headers = signed(payload)
    return await post_delivery(client, endpoint_id, body, headers)


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_sample_stored_and_counted(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    account = await api.put(
        f"/v1/accounts/{ACCOUNT}",
        json={
            "revenue": {
                "amount": "36000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
        },
    )
    stored = await stored_response(api, "survicate", RESPONSE_ID)
    coverage = await api.get("/v1/coverage", params={"period": "2026-03"})

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"
    assert account.status_code == 201, account.text
    extracted = {name: stored[name] for name in EXPECTED}
    extracted["submitted_at"] = datetime.fromisoformat(stored["submitted_at"])
    expected_at = datetime.fromisoformat(EXPECTED["submitted_at"])
    assert extracted == {**EXPECTED, "submitted_at": expected_at}
    assert coverage.status_code == 200, coverage.text
    assert coverage.json()["accounts"] == {"total": 1, "covered": 1}
    assert coverage.json()["covered_revenue"] == "36000.00"
    assert coverage.json()["buckets"]["at_risk"]["accounts"] == 1


async def test_one_byte_change_rejected(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    tampered = SAMPLE.body.replace(b"TYRELL-808", b"TYRELL-809")
    assert len(tampered) == len(SAMPLE.body)
    assert tampered != SAMPLE.body

    ack = await post_delivery(client, endpoint_id, tampered, SAMPLE.headers)
    stored = await api.get(f"/v1/responses/survicate/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert stored.status_code == 404
    assert await deliveries(api) == []


async def test_missing_signature_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    headers = {"Content-Type": "application/json", "Token": TOKEN}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert await deliveries(api) == []


async def test_duplicate_delivery_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    responses = await api.get("/v1/responses", params={"source": "survicate"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert [item["response_id"] for item in responses.json()["items"]] == [RESPONSE_ID]
    assert len(await deliveries(api)) == 1


async def test_retry_with_new_try_count_duplicate(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    retry = json.loads(SAMPLE.body)
    retry["deliveryTries"] = 1

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await send(client, endpoint_id, retry)

    assert first.json()["status"] == "processed"
    assert second.json()["status"] == "duplicate"
    assert len(await deliveries(api)) == 1


async def test_survey_completed_ignored(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    payload = {
        "messageId": uuid.uuid4().hex,
        "deliveryTries": 0,
        "event": {"surveyCompleted": {"survey": {"id": "a1b2c3d4e5f60718", "name": "In-app NPS"}}},
    }

    ack = await send(client, endpoint_id, payload)
    ignored = await deliveries(api, "ignored")
    responses = await api.get("/v1/responses", params={"source": "survicate"})

    assert ack.status_code == 200
    assert ack.json()["status"] == "ignored"
    assert [item["event_type"] for item in ignored] == ["surveyCompleted"]
    assert responses.json()["items"] == []


@pytest.mark.parametrize("choice_id", ["four", 11, -1, 21573])
async def test_invalid_score_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, choice_id: object
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, answer(id=choice_id))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "score" in failed[0]["error"]


async def test_invalid_timestamp_failed(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, answer(timestamp="18.03.2026 07:41"))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "event.questionAnswered.timestamp" in failed[0]["error"]


async def test_later_other_question_keeps_score(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    nps = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    other = await send(client, endpoint_id, other_question("2026-03-18T07:41:40+00:00"))
    stored = await stored_response(api, "survicate", RESPONSE_ID)

    assert nps.json()["status"] == "processed"
    assert other.json()["status"] == "ignored"
    assert stored["score"] == EXPECTED["score"]
    assert stored["comment"] == EXPECTED["comment"]


async def test_earlier_other_question_then_score(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    other = await send(client, endpoint_id, other_question("2026-03-18T07:41:10+00:00"))
    missing = await api.get(f"/v1/responses/survicate/{RESPONSE_ID}")
    nps = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    stored = await stored_response(api, "survicate", RESPONSE_ID)

    assert other.json()["status"] == "ignored"
    assert missing.status_code == 404
    assert nps.json()["status"] == "processed"
    assert stored["score"] == EXPECTED["score"]


async def test_older_score_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    newer = answer("2026-03-18T07:45:00+00:00", id=9, body="promoter", comment="Fixed now.")
    older = answer("2026-03-18T07:41:26+00:00", id=4, body="detractor", comment="Too slow.")

    first = await send(client, endpoint_id, newer)
    second = await send(client, endpoint_id, older)
    stored = await stored_response(api, "survicate", RESPONSE_ID)

    assert first.json()["status"] == "processed"
    assert second.json()["status"] == "processed"
    assert stored["score"] == 9
    assert stored["comment"] == "Fixed now."


async def test_empty_attributes_list_unmatched(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    payload = answer()
    payload["event"]["questionAnswered"]["respondent"]["attributes"] = []

    ack = await send(client, endpoint_id, payload)
    stored = await stored_response(api, "survicate", RESPONSE_ID)
    unmatched = await api.get("/v1/responses", params={"matched": "false"})

    assert ack.json()["status"] == "processed"
    assert stored["email"] is None
    assert stored["account_external_id"] is None
    assert [item["response_id"] for item in unmatched.json()["items"]] == [RESPONSE_ID]


async def test_score_field_names_question(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    by_id = await new_endpoint(api, score_field="334455")
    elsewhere = await new_endpoint(api, score_field="12123")
    payload = answer(body="4")

    matched = await send(client, by_id, payload)
    payload["messageId"] = uuid.uuid4().hex
    skipped = await send(client, elsewhere, payload)
    stored = await stored_response(api, "survicate", RESPONSE_ID)

    assert matched.json()["status"] == "processed"
    assert skipped.json()["status"] == "ignored"
    assert stored["score"] == 4
