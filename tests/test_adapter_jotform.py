"""Jotform webhooks through the HTTP API, from the recorded multipart submission.

Jotform signs nothing, so the checks that other platforms make on a signature are made
here on the endpoint's token, and a changed body cannot be detected. Jotform sends one
event per submission and no version time, so there is no out-of-order case to test.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("jotform-submission")
TOKEN = SAMPLE.meta["authentication"]["test_url_token"]
EXPECTED = SAMPLE.expected
RESPONSE_ID = EXPECTED["response_id"]
ACCOUNT = EXPECTED["account_external_id"]
RECEIVED_AT = datetime(2026, 3, 16, 9, 20, 21, tzinfo=UTC)
BOUNDARY = SAMPLE.headers["Content-Type"].split("boundary=")[1].encode()

SetClock = Callable[[datetime], None]


def part_span(name: str) -> tuple[int, int]:
    """The start and end offsets of the content of the sample's part `name`."""
    marker = f'name="{name}"\r\n\r\n'.encode()
    start = SAMPLE.body.index(marker) + len(marker)
    return start, SAMPLE.body.index(b"\r\n--" + BOUNDARY, start)


def with_part(name: str, value: str) -> bytes:
    """The sample's multipart body with the content of the part `name` replaced."""
    start, end = part_span(name)
    return SAMPLE.body[:start] + value.encode() + SAMPLE.body[end:]


RAW_REQUEST: dict[str, Any] = json.loads(SAMPLE.body[slice(*part_span("rawRequest"))])


def with_answers(**answers: str | None) -> bytes:
    """The body with rawRequest answers replaced; None removes the answer's key."""
    raw_request = dict(RAW_REQUEST)
    for key, value in answers.items():
        if value is None:
            raw_request.pop(key, None)
        else:
            raw_request[key] = value
    return with_part("rawRequest", json.dumps(raw_request, ensure_ascii=False))


async def new_endpoint(api: httpx.AsyncClient, **settings: Any) -> str:
    settings.setdefault("token", TOKEN)
    endpoint = await create_endpoint(api, source="jotform", **settings)
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def send(
    client: httpx.AsyncClient, endpoint_id: str, body: bytes, *, query: str = f"token={TOKEN}"
) -> httpx.Response:
    return await post_delivery(client, endpoint_id, body, SAMPLE.headers, query=query)


async def deliveries(api: httpx.AsyncClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await api.get("/v1/webhook-deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def put_account(api: httpx.AsyncClient, external_id: str) -> None:
    revenue = {"amount": "75000.00", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}
    response = await api.put(f"/v1/accounts/{external_id}", json={"revenue": revenue})
    assert response.status_code in (200, 201), response.text


async def test_sample_yields_expected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(RECEIVED_AT)
    endpoint_id = await new_endpoint(api)
    await put_account(api, ACCOUNT)

    ack = await send(client, endpoint_id, SAMPLE.body)
    stored = await stored_response(api, "jotform", RESPONSE_ID)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"
    assert {name: stored[name] for name in EXPECTED if name != "submitted_at"} == {
        name: value for name, value in EXPECTED.items() if name != "submitted_at"
    }
    assert datetime.fromisoformat(stored["submitted_at"]) == RECEIVED_AT
    assert [item["delivery_key"] for item in await deliveries(api)] == [RESPONSE_ID]


async def test_sample_counted_once_account_has_revenue(
    api: httpx.AsyncClient, client: httpx.AsyncClient, set_clock: SetClock
) -> None:
    set_clock(RECEIVED_AT)
    endpoint_id = await new_endpoint(api)

    await send(client, endpoint_id, SAMPLE.body)
    unmatched = await stored_response(api, "jotform", RESPONSE_ID)
    await put_account(api, ACCOUNT)
    matched = await stored_response(api, "jotform", RESPONSE_ID)
    report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    assert unmatched["account_external_id"] is None
    assert matched["account_external_id"] == ACCOUNT
    assert report.status_code == 200, report.text
    assert report.json()["accounts"] == {"total": 1, "covered": 1}
    assert report.json()["covered_revenue"] == report.json()["total_revenue"] == "75000.00"
    assert report.json()["buckets"]["passive"]["accounts"] == 1


@pytest.mark.parametrize(
    "query",
    ["", "token=", "token=jf_url_token_2c7X", f"token={TOKEN}x"],
    ids=["missing", "empty", "wrong", "longer"],
)
async def test_missing_or_wrong_token_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, query: str
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, SAMPLE.body, query=query)
    lookup = await api.get(f"/v1/responses/jotform/{RESPONSE_ID}")

    assert ack.status_code == 401
    assert lookup.status_code == 404
    assert await deliveries(api) == []


async def test_token_in_header_accepted(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    headers = {**SAMPLE.headers, "X-Revcov-Token": TOKEN}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "processed"


async def test_no_token_configured_accepts(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="jotform")

    ack = await post_delivery(client, endpoint["id"], SAMPLE.body, SAMPLE.headers)

    assert endpoint["has_token"] is False
    assert ack.status_code == 200, ack.text


async def test_same_delivery_twice_stored_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    first = await send(client, endpoint_id, SAMPLE.body)
    second = await send(client, endpoint_id, SAMPLE.body)
    listed = await api.get("/v1/responses", params={"source": "jotform"})

    assert first.json()["status"] == "processed"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert len(await deliveries(api)) == 1
    assert [item["response_id"] for item in listed.json()["items"]] == [RESPONSE_ID]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (with_part("rawRequest", '{"q4_howLikely":"8",'), "rawRequest is not valid JSON"),
        (with_part("rawRequest", '["8"]'), "rawRequest is not a JSON object"),
        (with_answers(q4_howLikely="eight"), "score"),
        (with_answers(q4_howLikely="12"), "score"),
        (with_answers(q4_howLikely=None), "q<id>_howLikely"),
        (with_part("submissionID", ""), "submissionID"),
    ],
    ids=["json-cut", "json-array", "score-word", "score-12", "no-score-field", "no-id"],
)
async def test_unmappable_delivery_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, body: bytes, reason: str
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, body)
    failed = await deliveries(api, "failed")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert reason in ack.json()["detail"]
    assert [item["id"] for item in failed] == [ack.json()["delivery_id"]]
    assert reason in failed[0]["error"]


async def test_wrong_boundary_failed(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    headers = {"Content-Type": "multipart/form-data; boundary=not-the-boundary"}

    ack = await post_delivery(client, endpoint_id, SAMPLE.body, headers, query=f"token={TOKEN}")

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert "boundary" in ack.json()["detail"]


async def test_empty_score_stored_as_skipped(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)

    ack = await send(client, endpoint_id, with_answers(q4_howLikely=""))
    stored = await stored_response(api, "jotform", RESPONSE_ID)

    assert ack.json()["status"] == "processed"
    assert stored["score"] is None


async def test_utf8_answer_kept(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(api)
    comment = "Très bien: dashboards ✓, mobile app, not yet"

    await send(client, endpoint_id, with_answers(q5_whatIs=comment))
    stored = await stored_response(api, "jotform", RESPONSE_ID)

    assert stored["comment"] == comment


async def test_custom_field_names(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint_id = await new_endpoint(
        api, score_field="recommend", comment_field="why", account_field="company"
    )
    await put_account(api, "WAYNE-77")
    body = with_answers(
        q4_howLikely=None,
        q5_whatIs=None,
        q6_accountId=None,
        q10_recommend="10",
        q11_why="Fast answers.",
        q12_company="WAYNE-77",
    )

    await send(client, endpoint_id, body)
    stored = await stored_response(api, "jotform", RESPONSE_ID)

    assert stored["score"] == 10
    assert stored["comment"] == "Fast answers."
    assert stored["account_external_id"] == "WAYNE-77"


async def test_compound_account_answer_failed(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint_id = await new_endpoint(api)
    raw_request = {**RAW_REQUEST, "q6_accountId": {"first": "STARK", "last": "019"}}

    ack = await send(client, endpoint_id, with_part("rawRequest", json.dumps(raw_request)))

    assert ack.json()["status"] == "failed"
    assert "accountId" in ack.json()["detail"]
