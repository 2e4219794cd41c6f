"""Wootric (InMoment) webhooks through the HTTP API, from the recorded `response created`."""

import hashlib
import hmac
import urllib.parse
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("wootric-response_created")
SECRET = SAMPLE.signature["test_secret"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
# The sample sends the account id as the end-user property `company_id`.
MAPPING = {"account_field": "company_id"}


def form(**changes: str | None) -> dict[str, str]:
    """The sample's form fields with `changes` applied; a value of None removes the field.
    Keys use `__` for brackets: `response__score` is `response[score]`."""
    fields = dict(urllib.parse.parse_qsl(SAMPLE.body.decode(), keep_blank_values=True))
    for name, value in changes.items():
        key = name.split("__")[0] + "".join(f"[{part}]" for part in name.split("__")[1:])
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


def signed(fields: dict[str, str], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = urllib.parse.urlencode(fields, quote_via=urllib.parse.quote, safe="[]").encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Wootric-Signature": f"sha1={digest}",
    }
    return body, headers


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    endpoint = await create_endpoint(api, source="wootric", secret=SECRET, **settings)
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def send(
    client: httpx.AsyncClient, endpoint_id: str, fields: dict[str, str]
) -> httpx.Response:
    body, headers = signed(fields)
    return await post_delivery(client, endpoint_id, body, headers)


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def put_account(api: httpx.AsyncClient, external_id: str) -> None:
    revenue = {"amount": "36000.00", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}
    response = await api.put(f"/v1/accounts/{external_id}", json={"revenue": revenue})
    assert response.status_code in (200, 201), response.text


def extraction(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored response in the sidecar's `expected` shape, times as aware datetimes."""
    fields = {name: stored[name] for name in EXPECTED}
    fields["submitted_at"] = datetime.fromisoformat(stored["submitted_at"])
    return fields


EXPECTED_EXTRACTION = {**EXPECTED, "submitted_at": datetime.fromisoformat(EXPECTED["submitted_at"])}


async def test_sample_yields_expected(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    await put_account(api, ACCOUNT)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    stored = await stored_response(api, "wootric", RESPONSE_ID)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"
    assert extraction(stored) == EXPECTED_EXTRACTION
    assert [(item["delivery_key"], item["event_type"]) for item in await deliveries(api)] == [
        ("response:created:88120931:2026-03-17 09:12:44 -0700", "response created")
    ]


async def test_sample_counted_once_account_has_revenue(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    unmatched = await stored_response(api, "wootric", RESPONSE_ID)
    await put_account(api, ACCOUNT)
    matched = await stored_response(api, "wootric", RESPONSE_ID)
    report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    assert unmatched["account_external_id"] is None
    assert matched["account_external_id"] == ACCOUNT
    assert report.status_code == 200, report.text
    assert report.json()["accounts"] == {"total": 1, "covered": 1}
    assert report.json()["covered_revenue"] == report.json()["total_revenue"] == "36000.00"
    assert report.json()["buckets"]["at_risk"]["accounts"] == 1


async def test_body_changed_one_byte_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    body = SAMPLE.body.replace(b"response[score]=3", b"response[score]=9")
    assert len(body) == len(SAMPLE.body)
    assert body != SAMPLE.body

    ack = await post_delivery(client, endpoint_id, body, SAMPLE.headers)
    lookup = await api.get(f"/v1/responses/wootric/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert lookup.status_code == 404
    assert await deliveries(api) == []


@pytest.mark.parametrize(
    "signature",
    [None, "", "27ff16d4f8d9736ba41049372c9218dd8f8f2c5e", "sha256=27ff16d4f8d9736ba410"],
    ids=["missing", "empty", "no-prefix", "other-scheme"],
)
async def test_bad_signature_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, signature: str | None
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Wootric-Signature"] = signature

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 401
    assert "X-Wootric-Signature" in ack.json()["detail"]
    assert await deliveries(api) == []


async def test_other_secret_rejected(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    body, headers = signed(form(), secret="another-account-secret")

    ack = await post_delivery(client, endpoint_id, body, headers)

    assert ack.status_code == 401


async def test_same_delivery_twice_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    listed = await api.get("/v1/responses", params={"source": "wootric"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert len(await deliveries(api)) == 1
    assert [item["response_id"] for item in listed.json()["items"]] == [RESPONSE_ID]


async def test_retry_with_new_send_time_is_duplicate(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    retry = form(timestamp="2026-03-17 09:20:00 -0700")

    await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    ack = await send(client, endpoint_id, retry)

    assert ack.json()["status"] == "duplicate"


async def test_update_replaces_created(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    update = form(
        event_name="updated",
        response__score="6",
        response__text="Billing emails fixed, still slow support.",
        response__updated_at="2026-03-17 09:30:02 -0700",
    )

    created = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    updated = await send(client, endpoint_id, update)
    stored = await stored_response(api, "wootric", RESPONSE_ID)
    listed = await api.get("/v1/responses", params={"source": "wootric"})

    assert created.json()["status"] == "processed"
    assert updated.json()["status"] == "processed"
    assert stored["score"] == 6
    assert stored["comment"] == "Billing emails fixed, still slow support."
    assert datetime.fromisoformat(stored["submitted_at"]) == EXPECTED_EXTRACTION["submitted_at"]
    assert len(listed.json()["items"]) == 1


async def test_created_after_update_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    update = form(
        event_name="updated",
        response__score="6",
        response__updated_at="2026-03-17 09:30:02 -0700",
    )

    await send(client, endpoint_id, update)
    late = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    stored = await stored_response(api, "wootric", RESPONSE_ID)

    assert late.json()["status"] == "processed"
    assert stored["score"] == 6


async def test_decline_ignored(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)
    decline = {
        "decline[id]": "19",
        "decline[email]": "alex.moreau@example.com",
        "decline[end_user_properties][company_id]": ACCOUNT,
        "decline[created_at]": "2026-03-17 09:58:21 -0700",
        "decline[updated_at]": "2026-03-17 09:58:21 -0700",
        "event_name": "created",
        "timestamp": "2026-03-17 09:58:23 -0700",
    }

    ack = await send(client, endpoint_id, decline)
    listed = await api.get("/v1/responses", params={"source": "wootric"})

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "ignored"
    assert listed.json()["items"] == []
    assert [item["event_type"] for item in await deliveries(api)] == ["decline created"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"response__score": "ten"}, "score"),
        ({"response__score": "11"}, "score"),
        ({"response__created_at": "17/03/2026 09:12"}, "response[created_at]"),
        ({"response__created_at": None}, "response[created_at]"),
        ({"response__updated_at": "soon"}, "response[updated_at]"),
    ],
    ids=["score-word", "score-11", "created-at-text", "created-at-missing", "updated-at-text"],
)
async def test_unmappable_delivery_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, changes: dict[str, str | None], reason: str
) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)

    ack = await send(client, endpoint_id, form(**changes))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert reason in ack.json()["detail"]
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]


async def test_empty_text_no_comment(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, **MAPPING)

    await send(client, endpoint_id, form(response__text=""))
    stored = await stored_response(api, "wootric", RESPONSE_ID)

    assert stored["comment"] is None
    assert stored["score"] == 3


async def test_default_account_property(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    await put_account(api, "GLOBEX-42")

    await send(client, endpoint_id, form(response__end_user_properties__account_id="GLOBEX-42"))
    stored = await stored_response(api, "wootric", RESPONSE_ID)

    assert stored["account_external_id"] == "GLOBEX-42"
