"""Tally webhooks through the HTTP API, from the recorded `FORM_RESPONSE`."""

import base64
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

SAMPLE = load_sample("tally-form_response")
SECRET = SAMPLE.signature["test_secret"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]


def event(created_at: str | None = None) -> dict[str, Any]:
    """The sample with a new eventId and, when given, a new event createdAt."""
    payload: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.body))
    payload["eventId"] = str(uuid.uuid4())
    if created_at is not None:
        payload["createdAt"] = created_at
    return payload


def field(payload: dict[str, Any], field_type: str) -> dict[str, Any]:
    """The payload's first field of this type, to change in place."""
    found: dict[str, Any] = next(f for f in payload["data"]["fields"] if f["type"] == field_type)
    return found


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    # Compact separators, as Tally's JavaScript sender writes them.
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "Tally-Signature": base64.b64encode(digest).decode(),
    }
    return body, headers


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    endpoint = await create_endpoint(api, source="tally", secret=SECRET, **settings)
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
                "amount": "48000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
        },
    )
    stored = await stored_response(api, "tally", RESPONSE_ID)
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
    assert coverage.json()["covered_revenue"] == "48000.00"
    assert coverage.json()["buckets"]["safe"]["accounts"] == 1


async def test_one_byte_change_rejected(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    tampered = SAMPLE.body.replace(b"INITECH-007", b"INITECH-008")
    assert len(tampered) == len(SAMPLE.body)
    assert tampered != SAMPLE.body

    ack = await post_delivery(client, endpoint_id, tampered, SAMPLE.headers)
    stored = await api.get(f"/v1/responses/tally/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert stored.status_code == 404
    assert await deliveries(api) == []


async def test_missing_signature_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    headers = {"Content-Type": "application/json", "User-Agent": "Tally Webhooks"}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert "set a signing secret in Tally's webhook settings" in ack.json()["detail"]
    assert await deliveries(api) == []


async def test_duplicate_delivery_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    responses = await api.get("/v1/responses", params={"source": "tally"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert [item["response_id"] for item in responses.json()["items"]] == [RESPONSE_ID]
    assert len(await deliveries(api)) == 1


async def test_other_event_ignored(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    payload = {"eventId": str(uuid.uuid4()), "eventType": "TEST", "data": {}}

    ack = await send(client, endpoint_id, payload)
    ignored = await deliveries(api, "ignored")
    responses = await api.get("/v1/responses", params={"source": "tally"})

    assert ack.status_code == 200
    assert ack.json()["status"] == "ignored"
    assert [item["event_type"] for item in ignored] == ["TEST"]
    assert responses.json()["items"] == []


@pytest.mark.parametrize("value", ["ten", 11, -1, 9.5, [3, 4]])
async def test_invalid_score_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, value: object
) -> None:
    endpoint_id = await new_endpoint(api)
    payload = event()
    field(payload, "LINEAR_SCALE")["value"] = value

    ack = await send(client, endpoint_id, payload)
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "NPS answer" in failed[0]["error"]


@pytest.mark.parametrize(("place", "name"), [("data", "data.createdAt"), ("event", "createdAt")])
async def test_invalid_timestamp_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, place: str, name: str
) -> None:
    endpoint_id = await new_endpoint(api)
    payload = event()
    target = payload["data"] if place == "data" else payload
    target["createdAt"] = "13/03/2026 14:02"

    ack = await send(client, endpoint_id, payload)
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert failed[0]["error"].startswith(f"{name} ")


async def test_older_event_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    newer = event(created_at="2026-03-14T09:00:00.000Z")
    field(newer, "LINEAR_SCALE")["value"] = 9
    older = event(created_at="2026-03-13T14:02:11.482Z")
    field(older, "LINEAR_SCALE")["value"] = 3

    first = await send(client, endpoint_id, newer)
    second = await send(client, endpoint_id, older)
    stored = await stored_response(api, "tally", RESPONSE_ID)

    assert first.json()["status"] == "processed"
    assert second.json()["status"] == "processed"
    assert stored["score"] == 9


async def test_hidden_fields_matched_by_label(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, account_field="company")
    payload = event()
    hidden = [f for f in payload["data"]["fields"] if f["type"] == "HIDDEN_FIELDS"]
    for number, hidden_field in enumerate(hidden):
        hidden_field["key"] = f"question_Xy98Zw_{number}"
    hidden[0]["label"] = "company"
    await api.put("/v1/accounts/INITECH-007", json={})

    await send(client, endpoint_id, payload)
    stored = await stored_response(api, "tally", RESPONSE_ID)

    assert stored["account_external_id"] == "INITECH-007"
    assert stored["email"] == EXPECTED["email"]


async def test_score_field_by_key_or_label(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    payload = event()
    payload["data"]["fields"].insert(
        0,
        {
            "key": "question_Ease01",
            "label": "How easy was setup?",
            "type": "LINEAR_SCALE",
            "value": 2,
        },
    )
    by_default = await new_endpoint(api)
    by_key = await new_endpoint(api, score_field="question_Ve9wQx")
    by_label = await new_endpoint(api, score_field=field(event(), "LINEAR_SCALE")["label"])

    scores = []
    for hour, endpoint_id in enumerate((by_default, by_key, by_label)):
        payload["eventId"] = str(uuid.uuid4())
        payload["createdAt"] = f"2026-03-14T0{hour}:00:00.000Z"
        await send(client, endpoint_id, payload)
        scores.append((await stored_response(api, "tally", RESPONSE_ID))["score"])

    assert scores == [2, 10, 10]


async def test_dropdown_score_resolved(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, score_field="Score")
    payload = event()
    payload["data"]["fields"] = [
        f for f in payload["data"]["fields"] if f["type"] != "LINEAR_SCALE"
    ] + [
        {
            "key": "question_Dd01",
            "label": "Score",
            "type": "DROPDOWN",
            "value": ["opt-7"],
            "options": [{"id": f"opt-{n}", "text": str(n)} for n in range(11)],
        }
    ]

    ack = await send(client, endpoint_id, payload)
    stored = await stored_response(api, "tally", RESPONSE_ID)

    assert ack.json()["status"] == "processed"
    assert stored["score"] == 7


async def test_unanswered_score_stored_as_null(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    payload = event()
    field(payload, "LINEAR_SCALE")["value"] = None

    ack = await send(client, endpoint_id, payload)
    stored = await stored_response(api, "tally", RESPONSE_ID)

    assert ack.json()["status"] == "processed"
    assert stored["score"] is None


@pytest.mark.parametrize("score_field", [None, "question_Missing"])
async def test_missing_score_question_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, score_field: str | None
) -> None:
    endpoint_id = await new_endpoint(api, score_field=score_field)
    payload = event()
    payload["data"]["fields"] = [
        f for f in payload["data"]["fields"] if f["type"] != "LINEAR_SCALE"
    ]

    ack = await send(client, endpoint_id, payload)

    assert ack.json()["status"] == "failed"
    assert "NPS question is missing" in ack.json()["detail"]
