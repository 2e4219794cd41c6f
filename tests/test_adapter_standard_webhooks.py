"""Standard Webhooks deliveries through the HTTP API, from the recorded spec example, whose
header carries a signature with the previous secret and one with the current secret."""

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

SAMPLE = load_sample("standardwebhooks-spec_example")
SECRET = SAMPLE.signature["test_secret"]
PREVIOUS_SECRET = SAMPLE.signature["previous_secret_during_rotation"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
SENT_AT = datetime.fromtimestamp(int(SAMPLE.headers["webhook-timestamp"]), UTC)
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-sender-secret-0000032").decode()

SetClock = Callable[[datetime], None]


def sign(body: bytes, message_id: str, timestamp: str, secret: str = SECRET) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def envelope(**data: Any) -> dict[str, Any]:
    """The sample's payload with the given `data` fields replaced."""
    payload: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.body))
    payload["data"].update(data)
    return payload


def signed(
    payload: dict[str, Any], message_id: str, *, sent_at: datetime = SENT_AT
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(sent_at.timestamp()))
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(body, message_id, timestamp),
    }
    return body, headers


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    settings.setdefault("secret", SECRET)
    endpoint = await create_endpoint(api, source="standard-webhooks", **settings)
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def put_account(api: httpx.AsyncClient, external_id: str) -> None:
    revenue = {"amount": "90000.00", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}
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
    set_clock(SENT_AT + timedelta(seconds=2))
    endpoint_id = await new_endpoint(api)
    await put_account(api, ACCOUNT)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    stored = await stored_response(api, "standard-webhooks", RESPONSE_ID)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"
    assert extraction(stored) == EXPECTED_EXTRACTION
    assert datetime.fromisoformat(stored["updated_at"]) == EXPECTED_EXTRACTION["submitted_at"]
    assert [item["delivery_key"] for item in await deliveries(api)] == [
        SAMPLE.headers["webhook-id"]
    ]


async def test_sample_counted_once_account_has_revenue(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    unmatched = await stored_response(api, "standard-webhooks", RESPONSE_ID)
    await put_account(api, ACCOUNT)
    matched = await stored_response(api, "standard-webhooks", RESPONSE_ID)
    report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    assert unmatched["account_external_id"] is None
    assert matched["account_external_id"] == ACCOUNT
    assert report.status_code == 200, report.text
    assert report.json()["accounts"] == {"total": 1, "covered": 1}
    assert report.json()["covered_revenue"] == report.json()["total_revenue"] == "90000.00"
    assert report.json()["buckets"]["passive"]["accounts"] == 1


@pytest.mark.parametrize(
    ("secrets", "accepted"),
    [
        ([PREVIOUS_SECRET, SECRET], True),
        ([SECRET], True),
        ([PREVIOUS_SECRET], True),
        ([OTHER_SECRET], False),
    ],
    ids=["both", "current", "previous", "other"],
)
async def test_rotation_any_signature_matches(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    set_clock: SetClock,
    secrets: list[str],
    accepted: bool,
) -> None:
    set_clock(SENT_AT)
    endpoint = await create_endpoint(api, source="standard-webhooks", secrets=secrets)

    ack = await post_delivery(client, endpoint["id"], SAMPLE.body, SAMPLE.headers)

    assert ack.status_code == (200 if accepted else 401), ack.text


async def test_previous_signature_rejected_after_rotation(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    old_signature = SAMPLE.signature["value_with_previous_secret"]
    headers = {**SAMPLE.headers, "webhook-signature": old_signature}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert ack.json()["type"] == "urn:revcov:problem:invalid-signature"


async def test_body_changed_one_byte_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    body = SAMPLE.body.replace(b'"score":8', b'"score":9')
    assert len(body) == len(SAMPLE.body)
    assert body != SAMPLE.body

    ack = await post_delivery(client, endpoint_id, body, SAMPLE.headers)
    lookup = await api.get(f"/v1/responses/standard-webhooks/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert lookup.status_code == 404
    assert await deliveries(api) == []


@pytest.mark.parametrize("header", ["webhook-signature", "webhook-id", "webhook-timestamp"])
async def test_missing_header_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock, header: str
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    headers = {name: value for name, value in SAMPLE.headers.items() if name != header}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert header in ack.json()["detail"]
    assert await deliveries(api) == []


@pytest.mark.parametrize(
    ("offset", "status_code"),
    [
        (timedelta(minutes=5), 200),
        (timedelta(minutes=-5), 200),
        (timedelta(minutes=5, seconds=1), 401),
        (timedelta(minutes=-5, seconds=-1), 401),
        (timedelta(days=30), 401),
    ],
    ids=["5min-late", "5min-early", "too-late", "too-early", "month-old"],
)
async def test_tolerance_window(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    set_clock: SetClock,
    offset: timedelta,
    status_code: int,
) -> None:
    set_clock(SENT_AT + offset)
    endpoint_id = await new_endpoint(api)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)

    assert ack.status_code == status_code, ack.text
    assert len(await deliveries(api)) == (1 if status_code == 200 else 0)


async def test_timestamp_not_unix_seconds_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    timestamp = SENT_AT.isoformat()
    headers = {
        **SAMPLE.headers,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(SAMPLE.body, SAMPLE.headers["webhook-id"], timestamp),
    }

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert "Unix seconds" in ack.json()["detail"]


async def test_huge_timestamp_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    timestamp = "9" * 400
    headers = {
        **SAMPLE.headers,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(SAMPLE.body, SAMPLE.headers["webhook-id"], timestamp),
    }

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert "tolerance" in ack.json()["detail"]


async def test_same_delivery_twice_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    listed = await api.get("/v1/responses", params={"source": "standard-webhooks"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert len(await deliveries(api)) == 1
    assert [item["response_id"] for item in listed.json()["items"]] == [RESPONSE_ID]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"data": {"score": "eight"}}, "score"),
        ({"data": {"score": 11}}, "score"),
        ({"data": {"score": 7.5}}, "score"),
        ({"timestamp": "20 March 2026"}, "timestamp"),
        ({"timestamp": None}, "timestamp"),
        ({"data": {"id": None}}, "data.id"),
    ],
    ids=["score-word", "score-11", "score-fraction", "timestamp-text", "timestamp-null", "no-id"],
)
async def test_unmappable_delivery_failed(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    set_clock: SetClock,
    change: dict[str, Any],
    reason: str,
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    payload = envelope(**change.pop("data", {}))
    payload.update(change)
    body, headers = signed(payload, "msg_unmappable")

    ack = await post_delivery(client, endpoint_id, body, headers)
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert reason in ack.json()["detail"]
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert reason in failed[0]["error"]


async def test_missing_score_stored_as_skipped(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    payload = envelope()
    del payload["data"]["score"]
    body, headers = signed(payload, "msg_skipped")

    ack = await post_delivery(client, endpoint_id, body, headers)
    stored = await stored_response(api, "standard-webhooks", RESPONSE_ID)

    assert ack.json()["status"] == "processed"
    assert stored["score"] is None


async def test_older_event_after_newer_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api)
    older = envelope(score=4, comment="First answer.")
    older["timestamp"] = "2026-03-20T09:59:00Z"
    newer = envelope(score=9, comment="Changed my mind.")
    newer["timestamp"] = "2026-03-20T10:01:00Z"

    for message_id, payload in (("msg_newer", newer), ("msg_older", older)):
        body, headers = signed(payload, message_id)
        ack = await post_delivery(client, endpoint_id, body, headers)
        assert ack.json()["status"] == "processed", ack.text
    stored = await stored_response(api, "standard-webhooks", RESPONSE_ID)

    assert stored["score"] == 9
    assert stored["comment"] == "Changed my mind."
    assert datetime.fromisoformat(stored["updated_at"]) == datetime(2026, 3, 20, 10, 1, tzinfo=UTC)


async def test_custom_fields_read_from_data(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(
        api, account_field="company", score_field="nps", comment_field="reason"
    )
    await put_account(api, "ACME-1")
    payload = envelope(company="ACME-1", nps="10", reason="Great support.")
    body, headers = signed(payload, "msg_custom")

    await post_delivery(client, endpoint_id, body, headers)
    stored = await stored_response(api, "standard-webhooks", RESPONSE_ID)

    assert stored["account_external_id"] == "ACME-1"
    assert stored["score"] == 10
    assert stored["comment"] == "Great support."


async def test_secret_not_base64_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(SENT_AT)
    endpoint_id = await new_endpoint(api, secret="whsec_not*base64*at*all!")

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)

    assert ack.status_code == 401
    assert "whsec_" in ack.json()["detail"]
