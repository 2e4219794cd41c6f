"""Formbricks webhooks through the HTTP API, from the recorded `responseFinished`."""

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("formbricks-responseFinished")
SECRET = SAMPLE.signature["test_secret"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
SENT_AT = datetime.fromtimestamp(int(SAMPLE.headers["webhook-timestamp"]), UTC)
# The sample survey's question ids, which an endpoint names in its settings.
MAPPING = {"score_field": "nps_q", "comment_field": "nps_reason"}

SetClock = Callable[[datetime], None]


def event(name: str = "responseFinished", **answers: Any) -> dict[str, Any]:
    """The sample with another event name and the given `data.data` answers replaced;
    an answer set to None is removed, as Formbricks leaves out skipped questions."""
    payload: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.body))
    payload["event"] = name
    for key, value in answers.items():
        if value is None:
            payload["data"]["data"].pop(key, None)
        else:
            payload["data"]["data"][key] = value
    return payload


def signed(
    payload: dict[str, Any], message_id: str, *, sent_at: datetime = SENT_AT
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(sent_at.timestamp()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    return body, headers


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    endpoint = await create_endpoint(api, source="formbricks", secret=SECRET, **settings)
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def send(
    client: httpx.AsyncClient, endpoint_id: str, payload: dict[str, Any], message_id: str
) -> httpx.Response:
    body, headers = signed(payload, message_id)
    return await post_delivery(client, endpoint_id, body, headers)


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def put_account(api: httpx.AsyncClient, external_id: str) -> None:
    revenue = {"amount": "48000.00", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}
    response = await api.put(f"/v1/accounts/{external_id}", json={"revenue": revenue})
    assert response.status_code in (200, 201), response.text


def extraction(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored response in the sidecar's `expected` shape, times as aware datetimes."""
    fields = {name: stored[name] for name in EXPECTED}
    fields["submitted_at"] = datetime.fromisoformat(stored["submitted_at"])
    return fields


EXPECTED_EXTRACTION = {**EXPECTED, "submitted_at": datetime.fromisoformat(EXPECTED["submitted_at"])}


async def test_sample_yields_expected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT + timedelta(seconds=1))
    endpoint_id = await new_endpoint(api, **MAPPING)
    await put_account(api, ACCOUNT)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    stored = await stored_response(api, "formbricks", RESPONSE_ID)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"
    assert extraction(stored) == EXPECTED_EXTRACTION
    assert [(item["delivery_key"], item["event_type"]) for item in await deliveries(api)] == [
        (SAMPLE.headers["webhook-id"], "responseFinished")
    ]


async def test_sample_counted_once_account_has_revenue(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    unmatched = await stored_response(api, "formbricks", RESPONSE_ID)
    await put_account(api, ACCOUNT)
    matched = await stored_response(api, "formbricks", RESPONSE_ID)
    report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    assert unmatched["account_external_id"] is None
    assert matched["account_external_id"] == ACCOUNT
    assert report.status_code == 200, report.text
    assert report.json()["accounts"] == {"total": 1, "covered": 1}
    assert report.json()["covered_revenue"] == report.json()["total_revenue"] == "48000.00"
    assert report.json()["buckets"]["passive"]["accounts"] == 1


async def test_no_score_field_fails_until_set(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert "score_field" in ack.json()["detail"]
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]

    patched = await api.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"score_field": "nps_q"})
    replayed = await api.post(f"/v1/webhook-deliveries/{ack.json()['delivery_id']}/replay")
    stored = await stored_response(api, "formbricks", RESPONSE_ID)

    assert patched.status_code == 200, patched.text
    assert replayed.json()["status"] == "processed"
    assert stored["score"] == 7
    assert stored["comment"] is None


async def test_body_changed_one_byte_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)
    body = SAMPLE.body.replace(b'"nps_q":7', b'"nps_q":9')
    assert len(body) == len(SAMPLE.body)
    assert body != SAMPLE.body

    ack = await post_delivery(client, endpoint_id, body, SAMPLE.headers)
    lookup = await api.get(f"/v1/responses/formbricks/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert lookup.status_code == 404
    assert await deliveries(api) == []


@pytest.mark.parametrize(
    "dropped",
    [("webhook-signature",), ("webhook-id", "webhook-timestamp", "webhook-signature")],
    ids=["signature", "all-headers"],
)
async def test_unsigned_delivery_rejected(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    set_clock: SetClock,
    dropped: tuple[str, ...],
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)
    headers = {name: value for name, value in SAMPLE.headers.items() if name not in dropped}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert "webhook-signature" in ack.json()["detail"]
    assert await deliveries(api) == []


@pytest.mark.parametrize(
    ("offset", "status_code"),
    [
        (timedelta(minutes=5), 200),
        (timedelta(minutes=-5), 200),
        (timedelta(minutes=5, seconds=1), 401),
        (timedelta(minutes=-5, seconds=-1), 401),
    ],
    ids=["5min-late", "5min-early", "too-late", "too-early"],
)
async def test_tolerance_window(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    set_clock: SetClock,
    offset: timedelta,
    status_code: int,
) -> None:
    set_clock(SENT_AT + offset)
    endpoint_id = await new_endpoint(api, **MAPPING)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)

    assert ack.status_code == status_code, ack.text
    assert len(await deliveries(api)) == (1 if status_code == 200 else 0)


async def test_same_delivery_twice_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    listed = await api.get("/v1/responses", params={"source": "formbricks"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert len(await deliveries(api)) == 1
    assert [item["response_id"] for item in listed.json()["items"]] == [RESPONSE_ID]


async def test_three_events_one_response(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)
    created = event("responseCreated", nps_q=None, nps_reason=None)
    created["data"]["updatedAt"] = "2026-03-14T08:30:12.418Z"
    updated = event("responseUpdated", nps_reason=None)
    updated["data"]["updatedAt"] = "2026-03-14T08:30:15.830Z"

    created_ack = await send(client, endpoint_id, created, "created")
    skipped = await stored_response(api, "formbricks", RESPONSE_ID)
    updated_ack = await send(client, endpoint_id, updated, "updated")
    answered = await stored_response(api, "formbricks", RESPONSE_ID)
    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    finished = await stored_response(api, "formbricks", RESPONSE_ID)
    listed = await api.get("/v1/responses", params={"source": "formbricks"})

    assert created_ack.json()["status"] == "processed"
    assert updated_ack.json()["status"] == "processed"
    assert skipped["score"] is None
    assert answered["score"] == 7
    assert answered["comment"] is None
    assert finished["comment"] == EXPECTED["comment"]
    assert len(listed.json()["items"]) == 1
    assert len(await deliveries(api, "processed")) == 3


async def test_older_event_after_newer_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)
    late = event("responseUpdated", nps_q=3, nps_reason=None)
    late["data"]["updatedAt"] = "2026-03-14T08:30:40.000Z"

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    ack = await send(client, endpoint_id, late, "late-update")
    stored = await stored_response(api, "formbricks", RESPONSE_ID)

    assert ack.json()["status"] == "processed"
    assert stored["score"] == 7
    assert stored["comment"] == EXPECTED["comment"]
    assert datetime.fromisoformat(stored["updated_at"]) == datetime.fromisoformat(
        EXPECTED["submitted_at"]
    )


@pytest.mark.parametrize(
    ("answers", "updated_at", "reason"),
    [
        ({"nps_q": "seven"}, None, "score"),
        ({"nps_q": 11}, None, "score"),
        ({}, "14/03/2026 08:31", "data.updatedAt"),
        ({}, "", "data.updatedAt"),
    ],
    ids=["score-word", "score-11", "updated-at-text", "updated-at-empty"],
)
async def test_unmappable_delivery_failed(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    set_clock: SetClock,
    answers: dict[str, Any],
    updated_at: str | None,
    reason: str,
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)
    payload = event(**answers)
    if updated_at is not None:
        payload["data"]["updatedAt"] = updated_at

    ack = await send(client, endpoint_id, payload, "unmappable")
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert reason in ack.json()["detail"]
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]


async def test_test_ping_ignored(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, {"event": "testEndpoint"}, "ping")
    listed = await api.get("/v1/responses", params={"source": "formbricks"})

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "ignored"
    assert listed.json()["items"] == []


async def test_contact_attributes_fallback(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, **MAPPING)
    await put_account(api, "INITECH-7")
    payload = event(account_id=None, email=None)
    payload["data"]["contactAttributes"] = {"account_id": "INITECH-7", "email": "li@example.com"}

    await send(client, endpoint_id, payload, "contact")
    stored = await stored_response(api, "formbricks", RESPONSE_ID)

    assert stored["account_external_id"] == "INITECH-7"
    assert stored["email"] == "li@example.com"
