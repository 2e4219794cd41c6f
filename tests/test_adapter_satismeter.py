"""SatisMeter webhooks through the HTTP API, from the recorded `completed` event.

SatisMeter signs nothing, so the endpoint's token takes the signature's place in these tests.
"""

import copy
import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("satismeter-completed")
TOKEN = SAMPLE.meta["authentication"]["test_url_token"]
QUERY = f"token={TOKEN}"
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]


def completed(**fields: Any) -> dict[str, Any]:
    """The sample with the given `response` fields replaced."""
    payload: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.body))
    payload["response"].update(fields)
    return payload


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    endpoint = await create_endpoint(api, source="satismeter", **settings)
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def send(
    client: httpx.AsyncClient, endpoint_id: str, payload: dict[str, Any], query: str = QUERY
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    return await post_delivery(client, endpoint_id, body, headers, query=query)


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_sample_stored_and_counted(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers, query=QUERY)
    account = await api.put(
        f"/v1/accounts/{ACCOUNT}",
        json={
            "revenue": {
                "amount": "99000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
        },
    )
    stored = await stored_response(api, "satismeter", RESPONSE_ID)
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
    assert coverage.json()["covered_revenue"] == "99000.00"
    assert coverage.json()["buckets"]["safe"]["accounts"] == 1


@pytest.mark.parametrize("query", ["", "token=sm_url_token_71d1"], ids=["missing", "wrong"])
async def test_bad_token_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, query: str
) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers, query=query)
    stored = await api.get(f"/v1/responses/satismeter/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert stored.status_code == 404
    assert await deliveries(api) == []


async def test_token_header_accepted(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)
    headers = {**SAMPLE.headers, "X-Revcov-Token": TOKEN}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 200
    assert ack.json()["status"] == "processed"


async def test_endpoint_without_token_accepts(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)

    assert ack.status_code == 200
    assert ack.json()["status"] == "processed"


async def test_duplicate_delivery_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)

    first = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers, query=QUERY)
    second = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers, query=QUERY)
    responses = await api.get("/v1/responses", params={"source": "satismeter"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery_id": None, "detail": None}
    assert [item["response_id"] for item in responses.json()["items"]] == [RESPONSE_ID]
    assert len(await deliveries(api)) == 1


async def test_dismissed_ignored(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)
    payload = completed(rating=None, feedback=None, answers=[], completed=False)
    payload["event"] = "dismissed"

    ack = await send(client, endpoint_id, payload)
    ignored = await deliveries(api, "ignored")
    responses = await api.get("/v1/responses", params={"source": "satismeter"})

    assert ack.status_code == 200
    assert ack.json()["status"] == "ignored"
    assert [item["event_type"] for item in ignored] == ["dismissed"]
    assert responses.json()["items"] == []


@pytest.mark.parametrize("rating", ["ten", 11, -1, 7.5])
async def test_invalid_score_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, rating: object
) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)

    ack = await send(client, endpoint_id, completed(rating=rating))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "score" in failed[0]["error"]


async def test_invalid_timestamp_failed(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)

    ack = await send(client, endpoint_id, completed(created="Thu Mar 19 2026"))
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert "response.created" in failed[0]["error"]


async def test_older_version_changes_nothing(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)
    newer = completed(rating=9, feedback="Better now.", created="2026-03-20T08:00:00.000Z")
    older = completed(rating=3, feedback="Too slow.", created="2026-03-19T12:03:55.214Z")

    first = await send(client, endpoint_id, newer)
    second = await send(client, endpoint_id, older)
    stored = await stored_response(api, "satismeter", RESPONSE_ID)

    assert first.json()["status"] == "processed"
    assert second.json()["status"] == "processed"
    assert stored["score"] == 9
    assert stored["comment"] == "Better now."


async def test_account_trait_setting_used(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN, account_field="plan")
    await api.put("/v1/accounts/Scale", json={})

    await send(client, endpoint_id, completed())
    stored = await stored_response(api, "satismeter", RESPONSE_ID)

    assert stored["account_external_id"] == "Scale"


async def test_missing_traits_unmatched(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api, token=TOKEN)
    payload = completed()
    del payload["response"]["user"]["traits"]

    ack = await send(client, endpoint_id, payload)
    unmatched = await api.get("/v1/responses", params={"matched": "false"})

    assert ack.json()["status"] == "processed"
    assert [item["response_id"] for item in unmatched.json()["items"]] == [RESPONSE_ID]
