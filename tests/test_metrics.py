"""GET /metrics: the Prometheus text format, request and webhook counters, fetch retries and
the connection pool, without tenant data in any label.

The session's app counts every test's requests, so each test compares a counter before
and after its own requests.
"""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from app.main import create_app
from app.settings import Settings
from tests.conftest import make_tenant
from tests.helpers import add_account, assert_problem
from tests.test_webhook_fetch import api_path, new_endpoint, post_sample
from tests.test_webhooks_typeform import SAMPLE_BODY, create_endpoint, deliver, variant
from tests.thin_payloads import ReplayServer, Reply, run_pass


async def scrape(client: httpx.AsyncClient) -> list[Sample]:
    """GET /metrics, parse it with the Prometheus text parser and return every sample."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """Return the sample's value, or 0 when no sample has these labels yet."""
    for sample in samples:
        if sample.name == name and sample.labels == labels:
            return sample.value
    return 0.0


async def delivery_count(client: httpx.AsyncClient, outcome: str, source: str) -> float:
    samples = await scrape(client)
    return value(samples, "revcov_webhook_deliveries_total", source=source, outcome=outcome)


class TestExposition:
    async def test_output_parses_with_every_family(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")

        families = {family.name for family in text_string_to_metric_families(response.text)}
        assert response.status_code == 200
        assert {
            "revcov_http_requests",
            "revcov_http_request_duration_seconds",
            "revcov_webhook_deliveries",
            "revcov_webhook_fetches",
            "revcov_webhook_fetch_retries",
            "revcov_db_pool_size",
            "revcov_db_pool_checked_out",
            "revcov_db_pool_idle",
            "revcov_db_pool_overflow",
            "process_resident_memory_bytes",
            "python_info",
            "python_gc_collections",
        } <= families

    async def test_pool_size_from_settings(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        samples = await scrape(client)

        assert value(samples, "revcov_db_pool_size") == settings.db_pool_size
        assert value(samples, "revcov_db_pool_checked_out") >= 0

    async def test_no_api_key_needed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")

        assert response.status_code == 200


class TestRequestMetrics:
    async def test_counted_by_route_template(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        external_id = f"ACME-{uuid.uuid4().hex}"
        route = "/v1/accounts/{external_id}"
        before = await scrape(client)

        await add_account(api, external_id)
        missing = await api.get(f"/v1/accounts/{external_id}-missing")
        after = await scrape(client)
        text = (await client.get("/metrics")).text

        assert missing.status_code == 404
        for method, status in (("PUT", "201"), ("GET", "404")):
            labels = {"method": method, "route": route, "status": status}
            counted = value(after, "revcov_http_requests_total", **labels)
            assert counted == value(before, "revcov_http_requests_total", **labels) + 1
            timed = value(after, "revcov_http_request_duration_seconds_count", **labels)
            assert (
                timed == value(before, "revcov_http_request_duration_seconds_count", **labels) + 1
            )
        assert external_id not in text

    async def test_static_files_counted_by_mount(self, client: httpx.AsyncClient) -> None:
        labels = {"method": "GET", "route": "/dashboard/static", "status": "200"}
        before = await scrape(client)

        served = await client.get("/dashboard/static/dashboard.css")
        after = await scrape(client)

        assert served.status_code == 200
        assert value(after, "revcov_http_requests_total", **labels) == (
            value(before, "revcov_http_requests_total", **labels) + 1
        )

    async def test_unknown_path_has_no_route(self, client: httpx.AsyncClient) -> None:
        path = f"/no-such-path-{uuid.uuid4().hex}"
        labels = {"method": "GET", "route": "none", "status": "404"}
        before = await scrape(client)

        await client.get(path)
        after = await scrape(client)
        text = (await client.get("/metrics")).text

        assert value(after, "revcov_http_requests_total", **labels) == (
            value(before, "revcov_http_requests_total", **labels) + 1
        )
        assert path not in text


class TestWebhookDeliveryMetrics:
    @pytest.fixture
    async def endpoint_id(self, api: httpx.AsyncClient) -> str:
        endpoint = await create_endpoint(api)
        return str(endpoint["id"])

    async def test_matched_delivery_accepted(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        await add_account(api, "ACME-001", "250000.00")
        before = await delivery_count(client, "accepted", "typeform")
        unmatched_before = await delivery_count(client, "unmatched", "typeform")

        response = await deliver(client, endpoint_id, SAMPLE_BODY)

        assert response.json()["status"] == "processed"
        assert await delivery_count(client, "accepted", "typeform") == before + 1
        assert await delivery_count(client, "unmatched", "typeform") == unmatched_before

    async def test_delivery_without_account_unmatched(
        self, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        before = await delivery_count(client, "unmatched", "typeform")
        accepted_before = await delivery_count(client, "accepted", "typeform")

        response = await deliver(client, endpoint_id, variant(uuid.uuid4().hex))

        assert response.json()["status"] == "processed"
        assert await delivery_count(client, "unmatched", "typeform") == before + 1
        assert await delivery_count(client, "accepted", "typeform") == accepted_before

    async def test_repeat_counted_duplicate(
        self, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        body = variant(uuid.uuid4().hex)
        await deliver(client, endpoint_id, body)
        before = await delivery_count(client, "duplicate", "typeform")

        response = await deliver(client, endpoint_id, body)

        assert response.json()["status"] == "duplicate"
        assert await delivery_count(client, "duplicate", "typeform") == before + 1

    async def test_unmappable_delivery_failed(
        self, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        def break_timestamp(payload: dict[str, object]) -> None:
            form_response = payload["form_response"]
            assert isinstance(form_response, dict)
            form_response["submitted_at"] = "yesterday"

        before = await delivery_count(client, "failed", "typeform")

        response = await deliver(client, endpoint_id, variant(uuid.uuid4().hex, break_timestamp))

        assert response.json()["status"] == "failed"
        assert await delivery_count(client, "failed", "typeform") == before + 1

    async def test_bad_signature_rejected(
        self, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        before = await delivery_count(client, "rejected", "typeform")
        accepted_before = await delivery_count(client, "accepted", "typeform")

        response = await deliver(client, endpoint_id, SAMPLE_BODY, signature="sha256=bad")

        assert_problem(response, 401)
        assert await delivery_count(client, "rejected", "typeform") == before + 1
        assert await delivery_count(client, "accepted", "typeform") == accepted_before

    async def test_labels_carry_no_tenant_data(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        tenant = (await api.get("/v1/tenant")).json()

        await deliver(client, endpoint_id, SAMPLE_BODY)
        text = (await client.get("/metrics")).text

        assert tenant["id"] not in text
        assert endpoint_id not in text
        assert "@" not in text


class TestFetchMetrics:
    async def test_fetch_retry_counted(
        self,
        app: FastAPI,
        api: httpx.AsyncClient,
        client: httpx.AsyncClient,
        server: ReplayServer,
        moment: datetime,
    ) -> None:
        server.reply(api_path(), Reply(503, b"{}"))
        endpoint_id = await new_endpoint(api, server.url)
        pending_before = await delivery_count(client, "pending", "qualtrics")
        await post_sample(client, endpoint_id)
        before = await scrape(client)

        await run_pass(app, moment)
        after = await scrape(client)

        assert await delivery_count(client, "pending", "qualtrics") == pending_before + 1
        retries = "revcov_webhook_fetch_retries_total"
        assert value(after, retries, source="qualtrics") == (
            value(before, retries, source="qualtrics") + 1
        )
        fetches = "revcov_webhook_fetches_total"
        assert value(after, fetches, source="qualtrics", outcome="retry") == (
            value(before, fetches, source="qualtrics", outcome="retry") + 1
        )


class TestMetricsToken:
    @pytest.fixture
    async def protected_app(self, database_url: str, settings: Settings) -> AsyncIterator[FastAPI]:
        protected = settings.model_copy(update={"metrics_token": SecretStr("metrics-" + "x" * 24)})
        application = create_app(protected, database_url=database_url)
        async with application.router.lifespan_context(application):
            yield application

    async def test_token_required_when_set(self, protected_app: FastAPI) -> None:
        _, api_key = await make_tenant(protected_app)
        transport = httpx.ASGITransport(app=protected_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            missing = await client.get("/metrics")
            tenant_key = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {api_key}"}
            )
            right = await client.get(
                "/metrics", headers={"Authorization": "Bearer metrics-" + "x" * 24}
            )

        assert_problem(missing, 401)
        assert_problem(tenant_key, 401)
        assert right.status_code == 200
        assert "revcov_http_requests_total" in right.text

    async def test_apps_count_separately(
        self, protected_app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        path = f"/separate-{uuid.uuid4().hex}"
        labels = {"method": "GET", "route": "none", "status": "404"}
        before = await scrape(client)

        transport = httpx.ASGITransport(app=protected_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            await other.get(path)
        after = await scrape(client)

        assert value(after, "revcov_http_requests_total", **labels) == value(
            before, "revcov_http_requests_total", **labels
        )
