"""Request limits: per-key rate limits, body size caps, batch sizes and page sizes."""

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from app.main import create_app
from app.ratelimit import TokenBuckets
from app.settings import Settings
from app.webhooks.service import loggable_endpoint_id
from tests.conftest import make_tenant
from tests.helpers import PROBLEM_JSON, assert_problem, client_with_key
from tests.webhook_samples import create_endpoint, load_sample, post_delivery

TYPEFORM = load_sample("typeform-form_response")
SECRET = TYPEFORM.signature["test_secret"]
BULK_LIMIT = 10 * 1024 * 1024
CHUNK = 64 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestTokenBuckets:
    def test_burst_then_rejected(self) -> None:
        buckets = TokenBuckets(rate=2, burst=3, clock=FakeClock())

        taken = [buckets.take("k") for _ in range(3)]
        rejected = buckets.take("k")

        assert taken == [0, 0, 0]
        assert rejected == pytest.approx(0.5)

    def test_refills_at_rate(self) -> None:
        clock = FakeClock()
        buckets = TokenBuckets(rate=2, burst=3, clock=clock)
        for _ in range(3):
            buckets.take("k")

        clock.now += 0.25
        early = buckets.take("k")
        clock.now += 0.25
        refilled = buckets.take("k")

        assert early == pytest.approx(0.25)
        assert refilled == 0

    def test_refill_capped_at_burst(self) -> None:
        clock = FakeClock()
        buckets = TokenBuckets(rate=10, burst=2, clock=clock)
        buckets.take("k")

        clock.now += 3600
        taken = [buckets.take("k") for _ in range(3)]

        assert taken[:2] == [0, 0]
        assert taken[2] > 0

    def test_keys_independent(self) -> None:
        buckets = TokenBuckets(rate=1, burst=1, clock=FakeClock())
        buckets.take("a")

        assert buckets.take("a") > 0
        assert buckets.take("b") == 0

    def test_least_recently_used_dropped(self) -> None:
        buckets = TokenBuckets(rate=1, burst=1, max_buckets=2, clock=FakeClock())
        buckets.take("a")
        buckets.take("b")
        buckets.take("a")

        buckets.take("c")

        # "b" was used least recently, so its empty bucket was dropped and starts full.
        assert buckets.take("a") > 0
        assert buckets.take("b") == 0


def _limited_settings(settings: Settings, **limits: Any) -> Settings:
    return settings.model_copy(update=limits)


@pytest.fixture
async def limited_app(database_url: str, settings: Settings) -> AsyncIterator[FastAPI]:
    """The service with 3 requests per API key and 3 deliveries per endpoint, refilled
    slowly enough (one token per 100 seconds) that no refill happens during a test."""
    limited = _limited_settings(
        settings,
        rate_limit_per_second=0.01,
        rate_limit_burst=3,
        webhook_rate_limit_per_second=0.01,
        webhook_rate_limit_burst=3,
    )
    application = create_app(limited, database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


def _delivery(number: int) -> bytes:
    text = TYPEFORM.body.decode()
    return text.replace(TYPEFORM.expected["response_id"], f"limit-{number}").encode()


def _signed_headers(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "Typeform-Signature": "sha256=" + base64.b64encode(digest).decode(),
    }


class TestRateLimits:
    async def test_key_over_limit_gets_429(self, limited_app: FastAPI) -> None:
        _, key = await make_tenant(limited_app)

        async with client_with_key(limited_app, key) as api:
            allowed = [(await api.get("/v1/tenant")).status_code for _ in range(3)]
            limited = await api.get("/v1/tenant")

        assert allowed == [200, 200, 200]
        problem = assert_problem(limited, 429)
        assert problem["type"] == "urn:revcov:problem:rate-limited"
        assert "API key" in problem["detail"]
        assert limited.headers["retry-after"] == "100"

    async def test_share_token_over_limit_gets_429(self, limited_app: FastAPI) -> None:
        _, key = await make_tenant(limited_app)
        async with client_with_key(limited_app, key) as api:
            token = (await api.post("/v1/share-tokens", json={"name": "wall"})).json()
        transport = httpx.ASGITransport(app=limited_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            params = {"token": token["share_token"], "period": "2026-Q1"}
            allowed = [
                (await client.get("/v1/widgets/coverage.svg", params=params)).status_code
                for _ in range(3)
            ]
            limited = await client.get("/v1/widgets/coverage.svg", params=params)

        assert allowed == [200, 200, 200]
        problem = assert_problem(limited, 429)
        assert "share token" in problem["detail"]

    async def test_repeated_token_counts_last(self, limited_app: FastAPI) -> None:
        # A repeated token is rejected, but the rate limit still counts the token that
        # would authenticate, so fresh decoys open no fresh budget.
        _, key = await make_tenant(limited_app)
        async with client_with_key(limited_app, key) as api:
            token = (await api.post("/v1/share-tokens", json={"name": "wall"})).json()
        transport = httpx.ASGITransport(app=limited_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = []
            for number in range(4):
                # A fresh decoy first, and the token that is authenticated last.
                params = [
                    ("token", f"decoy-{number}"),
                    ("token", token["share_token"]),
                    ("period", "2026-Q1"),
                ]
                response = await client.get("/v1/widgets/coverage.svg", params=params)
                statuses.append(response.status_code)

        assert statuses == [422, 422, 422, 429]

    async def test_limited_write_changes_nothing(self, limited_app: FastAPI) -> None:
        _, key = await make_tenant(limited_app)

        async with client_with_key(limited_app, key) as api:
            for _ in range(3):
                await api.get("/v1/tenant")
            written = await api.put("/v1/accounts/RL-1", json={"name": "Rate limited"})
        async with client_with_key(limited_app, (await make_tenant(limited_app))[1]) as other:
            listed = await other.get("/v1/accounts")

        assert_problem(written, 429)
        assert listed.json()["items"] == []

    async def test_other_key_not_affected(self, limited_app: FastAPI) -> None:
        _, first = await make_tenant(limited_app)
        _, second = await make_tenant(limited_app)

        async with client_with_key(limited_app, first) as api:
            for _ in range(4):
                await api.get("/v1/tenant")
        async with client_with_key(limited_app, second) as api:
            other = await api.get("/v1/tenant")

        assert other.status_code == 200, other.text

    async def test_health_probes_not_limited(self, limited_app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=limited_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = {(await client.get("/healthz")).status_code for _ in range(10)}

        assert statuses == {200}

    async def test_endpoint_over_limit_gets_429(self, limited_app: FastAPI) -> None:
        _, key = await make_tenant(limited_app)
        async with client_with_key(limited_app, key) as api:
            endpoint = await create_endpoint(api, source="typeform", secret=SECRET)

        transport = httpx.ASGITransport(app=limited_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = []
            for number in range(3):
                body = _delivery(number)
                delivered = await post_delivery(client, endpoint["id"], body, _signed_headers(body))
                statuses.append(delivered.status_code)
            body = _delivery(3)
            limited = await post_delivery(client, endpoint["id"], body, _signed_headers(body))
        async with client_with_key(limited_app, key) as api:
            stored = await api.get("/v1/responses/typeform/limit-3")

        assert statuses == [200, 200, 200]
        problem = assert_problem(limited, 429)
        assert "webhook endpoint" in problem["detail"]
        assert limited.headers["retry-after"] == "100"
        assert_problem(stored, 404)

    async def test_limited_lines_name_routes(self, limited_app: FastAPI) -> None:
        _, key = await make_tenant(limited_app)
        async with client_with_key(limited_app, key) as api:
            endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
            for _ in range(3):
                await api.get("/v1/tenant")
            with capture_logs() as logs:
                await api.get("/v1/contacts/dana@example.com")
            metrics = (await api.get("/metrics")).text
        transport = httpx.ASGITransport(app=limited_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for _ in range(3):
                await post_delivery(client, endpoint["id"], b"{}", {})
            with capture_logs() as webhook_logs:
                await post_delivery(client, endpoint["id"], b"{}", {})

        [contact_line] = [line for line in logs if line["event"] == "request.rate_limited"]
        [webhook_line] = [line for line in webhook_logs if line["event"] == "request.rate_limited"]
        assert contact_line["route"] == "/v1/contacts/{email}"
        assert "dana" not in repr(logs)
        assert webhook_line["route"] == "/v1/webhooks/{endpoint_id}"
        assert webhook_line["endpoint_id"] == loggable_endpoint_id(endpoint["id"])
        assert endpoint["id"] not in repr(webhook_logs)
        assert 'route="/v1/contacts/{email}",status="429"' in metrics

    async def test_endpoint_limit_apart_from_key(self, limited_app: FastAPI) -> None:
        # Deliveries count against the endpoint, so they leave the tenant's key untouched.
        _, key = await make_tenant(limited_app)
        async with client_with_key(limited_app, key) as api:
            endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
        transport = httpx.ASGITransport(app=limited_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for number in range(5):
                body = _delivery(100 + number)
                await post_delivery(client, endpoint["id"], body, _signed_headers(body))

        async with client_with_key(limited_app, key) as api:
            read = [(await api.get("/v1/tenant")).status_code for _ in range(2)]

        assert read == [200, 200]

    async def test_zero_rate_turns_limits_off(self, database_url: str, settings: Settings) -> None:
        unlimited = _limited_settings(
            settings,
            rate_limit_per_second=0,
            rate_limit_burst=1,
            webhook_rate_limit_per_second=0,
            webhook_rate_limit_burst=1,
        )
        application = create_app(unlimited, database_url=database_url)

        async with application.router.lifespan_context(application):
            _, key = await make_tenant(application)
            async with client_with_key(application, key) as api:
                statuses = {(await api.get("/v1/tenant")).status_code for _ in range(20)}

        assert statuses == {200}

    def test_defaults_documented(self) -> None:
        defaults = Settings()

        assert defaults.rate_limit_per_second == 100
        assert defaults.rate_limit_burst == 1000
        assert defaults.webhook_rate_limit_per_second == 200
        assert defaults.webhook_rate_limit_burst == 5000


class TestBodyLimits:
    async def test_streamed_bulk_body_stops_at_limit(self, api: httpx.AsyncClient) -> None:
        # Sent in chunks without Content-Length, so the size is known only while reading.
        # The service must stop reading soon after the limit instead of reading 20 MiB.
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b'{"updates": [], "padding": "'
            for _ in range(2 * BULK_LIMIT // CHUNK):
                sent += CHUNK
                yield b"x" * CHUNK
            yield b'"}'

        response = await api.post(
            "/v1/revenue-updates", content=chunks(), headers={"Content-Type": "application/json"}
        )

        assert "content-length" not in response.request.headers
        assert_problem(response, 413)
        assert sent <= BULK_LIMIT + 2 * CHUNK

    async def test_declared_webhook_length_rejected_unread(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(8):
                sent += CHUNK
                yield b"x" * CHUNK

        response = await client.post(
            f"/v1/webhooks/{endpoint['id']}",
            content=chunks(),
            headers={"Content-Type": "application/json", "Content-Length": str(8 * CHUNK)},
        )

        assert_problem(response, 413)
        assert sent <= CHUNK


BATCH_ROUTES = [
    (
        "POST",
        "/v1/revenue-updates",
        "updates",
        {
            "account_external_id": "B-1",
            "amount": "1.00",
            "currency": "USD",
            "effective_at": "2026-01-01T00:00:00Z",
        },
    ),
    (
        "POST",
        "/v1/responses",
        "responses",
        {
            "source": "native",
            "response_id": "r",
            "score": 9,
            "submitted_at": "2026-02-01T00:00:00Z",
        },
    ),
    (
        "PUT",
        "/v1/fx-rates",
        "rates",
        {"currency": "EUR", "rate": "1.1", "effective_at": "2026-01-01T00:00:00Z"},
    ),
]


class TestBatchLimits:
    @pytest.mark.parametrize(("method", "path", "field", "item"), BATCH_ROUTES)
    async def test_10001_items_rejected(
        self, api: httpx.AsyncClient, method: str, path: str, field: str, item: dict[str, Any]
    ) -> None:
        body = {field: [item] * 10_001}

        response = await api.request(method, path, json=body)

        problem = assert_problem(response, 422)
        assert [error["location"] for error in problem["errors"]] == [f"body.{field}"]
        assert "10000" in problem["errors"][0]["message"]


def _paginated_routes(app: FastAPI) -> list[str]:
    """List the path of every GET route that takes a `limit` query parameter."""
    paths = []
    for path, operations in app.openapi()["paths"].items():
        parameters = operations.get("get", {}).get("parameters", [])
        if any(p["name"] == "limit" and p["in"] == "query" for p in parameters):
            paths.append(path)
    return sorted(paths)


class TestPageLimits:
    def test_paginated_routes_found(self, app: FastAPI) -> None:
        assert {"/v1/accounts", "/v1/audit-events", "/v1/webhook-deliveries"} <= set(
            _paginated_routes(app)
        )

    @pytest.mark.parametrize("limit", ["1001", "0"])
    async def test_limit_out_of_range_rejected(
        self, app: FastAPI, api: httpx.AsyncClient, limit: str
    ) -> None:
        for path in _paginated_routes(app):
            url = re.sub(r"\{[^}]+\}", "x", path)

            response = await api.get(url, params={"limit": limit})

            assert response.status_code == 422, f"{path}: {response.text}"
            assert response.headers["content-type"] == PROBLEM_JSON
            locations = [error["location"] for error in response.json()["errors"]]
            assert "query.limit" in locations, path

    async def test_limit_1000_accepted(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/accounts", params={"limit": "1000"})

        assert response.status_code == 200, response.text
