"""Delighted webhooks through the HTTP API, from the recorded `survey_response.updated`."""

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

SAMPLE = load_sample("delighted-survey_response")
SECRET = SAMPLE.signature["test_secret"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
SAMPLE_UPDATED_AT = json.loads(SAMPLE.body)["event_data"]["updated_at"]


def event(event_type: str = "survey_response.updated", **event_data: Any) -> dict[str, Any]:
    """The sample with a new event_id and the given event_data fields replaced."""
    payload: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.body))
    payload["event_type"] = event_type
    payload["event_id"] = uuid.uuid4().hex
    payload["event_data"].update(event_data)
    return payload


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Delighted-Webhook-Signature": f"sha256={digest}",
    }
    return body, headers


async def new_endpoint(api: httpx.AsyncClient) -> str:
    endpoint = await create_endpoint(api, source="delighted", secret=SECRET)
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
                "amount": "120000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
        },
    )
    stored = await stored_response(api, "delighted", RESPONSE_ID)
    coverage = await api.get("/v1/coverage", params={"period": "2026-03"})

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"
    assert account.status_code == 201, account.text
    extracted = {name: stored[name] for name in EXPECTED}
    extracted["submitted_at"] = datetime.fromisoformat(stored["submitted_at"])
    assert extracted == {
        **EXPECTED,
        "submitted_at": datetime.fromisoformat(EXPECTED["submitted_at"]),
    }
    assert coverage.status_code == 200, coverage.text
    assert coverage.json()["accounts"] == {"total": 1, "covered": 1}
    assert coverage.json()["covered_revenue"] == "120000.00"
    assert coverage.json()["buckets"]["at_risk"]["accounts"] == 1


async def test_one_byte_change_rejected(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    tampered = SAMPLE.body.replace(b'"score": 6', b'"score": 9')
    assert len(tampered) == len(SAMPLE.body)
    assert tampered != SAMPLE.body

    ack = await post_delivery(client, endpoint_id, tampered, SAMPLE.headers)
    stored = await api.get(f"/v1/responses/delighted/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert stored.status_code == 404
    assert await deliveries(api) == []


async def test_missing_signature_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    headers = {"Content-Type": "application/json"}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert await deliveries(api) == []


async def test_duplicate_delivery_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    responses = await api.get("/v1/responses", params={"source": "delighted"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert [item["response_id"] for item in responses.json()["items"]] == [RESPONSE_ID]
    assert len(await deliveries(api)) == 1


async def test_unsubscribe_event_ignored(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    payload = {
        "event_type": "unsubscribe.created",
        "event_id": uuid.uuid4().hex,
        "event_data": {"person": {"email": "lee.okafor@example.net"}},
    }

    ack = await send(client, endpoint_id, payload)
    ignored = await deliveries(api, "ignored")
    responses = await api.get("/v1/responses", params={"source": "delighted"})

    assert ack.status_code == 200
    assert ack.json()["status"] == "ignored"
    assert [item["event_type"] for item in ignored] == ["unsubscribe.created"]
    assert responses.json()["items"] == []


@pytest.mark.parametrize("score", ["six", 11, -1, 6.5, True])
async def test_invalid_score_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, score: object
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, event(score=score))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "score" in failed[0]["error"]


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
async def test_invalid_timestamp_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, field: str
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, event(**{field: "yesterday"}))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert f"event_data.{field}" in failed[0]["error"]


async def test_out_of_range_seconds_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, event(created_at=10**20))

    assert ack.json()["status"] == "failed"


async def test_other_survey_type_failed(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, event(survey_type="csat", score=4))

    assert ack.json()["status"] == "failed"
    assert "survey_type" in ack.json()["detail"]


async def test_older_update_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    newer = event(score=8, comment="Exports are fast now.", updated_at=SAMPLE_UPDATED_AT + 60)
    older = event(score=6, comment="Exports time out.", updated_at=SAMPLE_UPDATED_AT)

    first = await send(client, endpoint_id, newer)
    second = await send(client, endpoint_id, older)
    stored = await stored_response(api, "delighted", RESPONSE_ID)

    assert first.json()["status"] == "processed"
    assert second.json()["status"] == "processed"
    assert stored["score"] == 8
    assert stored["comment"] == "Exports are fast now."


async def test_created_after_updated_same_second(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    updated = event(comment="Exports time out.", updated_at=SAMPLE_UPDATED_AT)
    created = event("survey_response.created", comment=None, updated_at=SAMPLE_UPDATED_AT)

    await send(client, endpoint_id, updated)
    await send(client, endpoint_id, created)
    stored = await stored_response(api, "delighted", RESPONSE_ID)

    assert stored["comment"] == "Exports time out."


async def test_updated_replaces_created(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    created_at = json.loads(SAMPLE.body)["event_data"]["created_at"]
    created = event("survey_response.created", comment=None, updated_at=created_at)

    await send(client, endpoint_id, created)
    before = await stored_response(api, "delighted", RESPONSE_ID)
    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    after = await stored_response(api, "delighted", RESPONSE_ID)

    assert before["score"] == 6
    assert before["comment"] is None
    assert after["comment"] == EXPECTED["comment"]


async def test_null_person_properties_unmatched(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, event(person_properties=None))
    unmatched = await api.get("/v1/responses", params={"matched": "false"})

    assert ack.json()["status"] == "processed"
    assert [item["response_id"] for item in unmatched.json()["items"]] == [RESPONSE_ID]


async def test_account_field_setting_used(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="delighted", secret=SECRET, account_field="Plan")
    await api.put("/v1/accounts/Enterprise", json={})

    await send(client, endpoint["id"], event())
    stored = await stored_response(api, "delighted", RESPONSE_ID)

    assert stored["account_external_id"] == "Enterprise"
