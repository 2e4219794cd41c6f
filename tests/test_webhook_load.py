"""Many deliveries at once: every response stored once, at its newest version."""

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import random

import httpx

from tests.webhook_samples import create_endpoint, load_sample, post_delivery

TYPEFORM = load_sample("typeform-form_response")
SECRET = TYPEFORM.signature["test_secret"]
RESPONSES = 1000
CONCURRENCY = 50


def _delivery(number: int, *, partial: bool) -> tuple[bytes, dict[str, str]]:
    """A partial (score 3) or full (score 9) Typeform delivery of response `number`."""
    payload = copy.deepcopy(json.loads(TYPEFORM.body))
    kind = "partial" if partial else "full"
    payload["event_id"] = f"evt-{number}-{kind}"
    payload["event_type"] = "form_response_partial" if partial else "form_response"
    payload["form_response"]["token"] = f"load-{number:04d}"
    payload["form_response"]["answers"][0]["number"] = 3 if partial else 9
    body = json.dumps(payload).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "Typeform-Signature": "sha256=" + base64.b64encode(digest).decode(),
    }
    return body, headers


async def _all_responses(api: httpx.AsyncClient) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": "1000", "source": "typeform", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/responses", params=params)).json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_duplicates_shuffled_concurrently(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    deliveries = [
        _delivery(number, partial=partial)
        for number in range(RESPONSES)
        for partial in (True, False)
    ]
    sends = deliveries * 2
    random.Random(7).shuffle(sends)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send(body: bytes, headers: dict[str, str]) -> int:
        async with gate:
            return (await post_delivery(client, endpoint["id"], body, headers)).status_code

    statuses = await asyncio.gather(*(send(body, headers) for body, headers in sends))
    stored = await _all_responses(api)

    assert set(statuses) == {200}
    assert len(stored) == RESPONSES
    assert len({item["response_id"] for item in stored}) == RESPONSES
    assert {item["score"] for item in stored} == {9}
