"""API keys, tenant settings and the isolation of one tenant's data from another's."""

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, text, update

from app.db.session import session_scope
from app.tenancy.models import ApiKey
from tests.conftest import make_tenant
from tests.helpers import assert_problem

WEBHOOK_SECRET = "tenancy_test_secret_0001"


@pytest.fixture
async def other_api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as a second tenant."""
    _, key = await make_tenant(app, "other")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client


async def put_account(api: httpx.AsyncClient, external_id: str, amount: str = "1000.00") -> None:
    response = await api.put(
        f"/v1/accounts/{external_id}",
        json={
            "name": f"Account {external_id}",
            "revenue": {
                "amount": amount,
                "currency": "USD",
                "effective_at": "2025-12-01T00:00:00Z",
            },
        },
    )
    assert response.status_code == 201, response.text


async def post_response(
    api: httpx.AsyncClient, response_id: str, account_external_id: str, score: int = 9
) -> None:
    response = await api.post(
        "/v1/responses",
        json={
            "responses": [
                {
                    "source": "native",
                    "response_id": response_id,
                    "account_external_id": account_external_id,
                    "email": f"{response_id}@example.com",
                    "score": score,
                    "submitted_at": "2026-02-01T12:00:00Z",
                }
            ]
        },
    )
    assert response.status_code == 200, response.text


# Every route that needs an API key, with a body that is valid once a key is given.
AUTHENTICATED_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/tenant", None),
    ("PATCH", "/v1/tenant", {"timezone": "UTC"}),
    ("GET", "/v1/accounts", None),
    ("GET", "/v1/accounts/ACME-001", None),
    ("PUT", "/v1/accounts/ACME-001", {"name": "Acme"}),
    (
        "POST",
        "/v1/revenue-updates",
        {
            "updates": [
                {
                    "account_external_id": "ACME-001",
                    "amount": "1.00",
                    "currency": "USD",
                    "effective_at": "2026-01-01T00:00:00Z",
                }
            ]
        },
    ),
    (
        "POST",
        "/v1/responses",
        {
            "responses": [
                {
                    "source": "native",
                    "response_id": "r1",
                    "score": 9,
                    "submitted_at": "2026-02-01T12:00:00Z",
                }
            ]
        },
    ),
    ("GET", "/v1/responses", None),
    ("GET", "/v1/responses/native/r1", None),
    ("POST", "/v1/webhook-endpoints", {"source": "typeform"}),
    ("GET", "/v1/webhook-endpoints", None),
    ("GET", "/v1/coverage?period=2026-Q1", None),
]


class TestAuthentication:
    @pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED_ROUTES)
    async def test_missing_key_rejected(
        self, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        response = await client.request(method, path, json=body)

        problem = assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert problem["detail"]

    @pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED_ROUTES)
    async def test_wrong_key_rejected(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
    ) -> None:
        # The wrong key has the real key's tenant part but another random part.
        scheme, tenant_hex, _ = api_key.split("_", 2)
        wrong_key = f"{scheme}_{tenant_hex}_{secrets.token_urlsafe(32)}"

        response = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {wrong_key}"}
        )

        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(
        "authorization",
        [
            "Bearer garbage",
            "Bearer ",
            "Bearer",
            "Basic dXNlcjpwYXNz",
            "Bearer rcv_",
            "Bearer rcv_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz_abcdef",
            f"Bearer rcv_{uuid.uuid4().hex}_{'x' * 43}",
            "Bearer " + "x" * 5000,
            "bearer-but-no-space",
        ],
    )
    async def test_garbage_key_rejected(
        self, client: httpx.AsyncClient, authorization: str
    ) -> None:
        response = await client.get("/v1/tenant", headers={"Authorization": authorization})

        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_forged_tenant_part_rejected(
        self, client: httpx.AsyncClient, app: FastAPI, api_key: str
    ) -> None:
        # A key whose tenant part names another tenant, with this tenant's random part.
        other_id, _ = await make_tenant(app, "other")
        random_part = api_key.split("_", 2)[2]
        forged = f"rcv_{other_id.hex}_{random_part}"

        response = await client.get("/v1/tenant", headers={"Authorization": f"Bearer {forged}"})

        assert_problem(response, 401)

    async def test_revoked_key_rejected(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        tenant_id, key = await make_tenant(app, "revoked")
        async with session_scope(app.state.sessionmaker) as session:
            await session.execute(
                update(ApiKey).where(ApiKey.tenant_id == tenant_id).values(revoked_at=func.now())
            )

        response = await client.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"})

        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_bearer_scheme_case_insensitive(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        response = await client.get("/v1/tenant", headers={"Authorization": f"bearer {api_key}"})

        assert response.status_code == 200, response.text

    async def test_health_needs_no_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")

        assert response.status_code == 200


class TestGetTenant:
    async def test_defaults(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/tenant")

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["timezone"] == "UTC"
        assert body["reporting_currency"] == "USD"
        assert body["coverage_target"] == 0.8


class TestPatchTenant:
    @pytest.mark.parametrize(
        "timezone", ["America/New_York", "Asia/Bangkok", "Europe/Berlin", "UTC"]
    )
    async def test_timezone_accepted(self, api: httpx.AsyncClient, timezone: str) -> None:
        response = await api.patch("/v1/tenant", json={"timezone": timezone})

        assert response.status_code == 200, response.text
        assert response.json()["timezone"] == timezone
        assert (await api.get("/v1/tenant")).json()["timezone"] == timezone

    @pytest.mark.parametrize(
        "timezone", ["Mars/Olympus_Mons", "Europe/Berlinn", "", "+02:00", "New York", 5]
    )
    async def test_timezone_rejected(self, api: httpx.AsyncClient, timezone: object) -> None:
        response = await api.patch("/v1/tenant", json={"timezone": timezone})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert "body.timezone" in locations
        assert (await api.get("/v1/tenant")).json()["timezone"] == "UTC"

    @pytest.mark.parametrize("field", ["timezone", "name", "default_rollup", "revenue_tiers"])
    async def test_null_setting_rejected(self, api: httpx.AsyncClient, field: str) -> None:
        before = (await api.get("/v1/tenant")).json()

        response = await api.patch("/v1/tenant", json={field: None, "coverage_target": "0.5"})

        problem = assert_problem(response, 422)
        assert [error["location"] for error in problem["errors"]] == [f"body.{field}"]
        assert "leave the field out" in problem["errors"][0]["message"]
        assert (await api.get("/v1/tenant")).json() == before

    @pytest.mark.parametrize(
        "bound", ["1e-999999999", "1e-100000", "0E+999999999999", "1e99999999999999999999"]
    )
    async def test_tier_bound_digits_limited(self, api: httpx.AsyncClient, bound: str) -> None:
        tiers = [{"label": "a", "min_revenue": "0"}, {"label": "b", "min_revenue": bound}]

        response = await api.patch("/v1/tenant", json={"revenue_tiers": tiers})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["body.revenue_tiers[1].min_revenue"]
        assert "40 digits" in problem["errors"][0]["message"]

    @pytest.mark.parametrize("currency", ["EUR", "JPY", "GBP"])
    async def test_currency_accepted(self, api: httpx.AsyncClient, currency: str) -> None:
        response = await api.patch("/v1/tenant", json={"reporting_currency": currency})

        assert response.status_code == 200, response.text
        assert response.json()["reporting_currency"] == currency
        assert (await api.get("/v1/tenant")).json()["reporting_currency"] == currency

    @pytest.mark.parametrize("currency", ["EURO", "ABC", "", "US", "usd", "€", 840])
    async def test_currency_rejected(self, api: httpx.AsyncClient, currency: object) -> None:
        response = await api.patch("/v1/tenant", json={"reporting_currency": currency})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert "body.reporting_currency" in locations
        assert (await api.get("/v1/tenant")).json()["reporting_currency"] == "USD"

    @pytest.mark.parametrize(("target", "expected"), [(1, 1.0), (0.85, 0.85), (0.0001, 0.0001)])
    async def test_target_accepted(
        self, api: httpx.AsyncClient, target: float, expected: float
    ) -> None:
        response = await api.patch("/v1/tenant", json={"coverage_target": target})

        assert response.status_code == 200, response.text
        assert response.json()["coverage_target"] == expected
        assert (await api.get("/v1/tenant")).json()["coverage_target"] == expected

    @pytest.mark.parametrize("target", [0, -0.1, 1.01, 2, 80, "abc", True])
    async def test_target_rejected(self, api: httpx.AsyncClient, target: object) -> None:
        response = await api.patch("/v1/tenant", json={"coverage_target": target})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert "body.coverage_target" in locations
        assert (await api.get("/v1/tenant")).json()["coverage_target"] == 0.8

    # A target is stored as sent or rejected. It must not be rounded to another value
    # (0.12345 to 0.1235) or to 0, which the database's check constraint rejects.
    @pytest.mark.parametrize("target", [0.00001, 0.00004, 0.12345, 0.99999])
    async def test_target_not_rounded(self, api: httpx.AsyncClient, target: float) -> None:
        response = await api.patch("/v1/tenant", json={"coverage_target": target})

        assert response.status_code in (200, 422), response.text
        stored = (await api.get("/v1/tenant")).json()["coverage_target"]
        assert stored in (target, 0.8)

    async def test_unknown_field_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.patch("/v1/tenant", json={"timezone": "Asia/Bangkok", "currency": "X"})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["body.currency"]
        assert (await api.get("/v1/tenant")).json()["timezone"] == "UTC"

    async def test_empty_patch_changes_nothing(self, api: httpx.AsyncClient) -> None:
        before = (await api.get("/v1/tenant")).json()

        response = await api.patch("/v1/tenant", json={})

        assert response.status_code == 200, response.text
        assert response.json() == before

    async def test_partial_patch_keeps_others(self, api: httpx.AsyncClient) -> None:
        await api.patch("/v1/tenant", json={"coverage_target": 0.9})

        response = await api.patch("/v1/tenant", json={"timezone": "Asia/Bangkok"})

        body = response.json()
        assert body["timezone"] == "Asia/Bangkok"
        assert body["coverage_target"] == 0.9
        assert body["reporting_currency"] == "USD"

    async def test_currency_change_with_revenue(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "ACME-001")

        response = await api.patch("/v1/tenant", json={"reporting_currency": "EUR"})
        report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

        assert response.status_code == 200, response.text
        assert (await api.get("/v1/tenant")).json()["reporting_currency"] == "EUR"
        # The USD revenue now needs a USD rate quoted in EUR.
        problem = assert_problem(report, 422)
        assert problem["detail"].startswith("no USD rate in force at 2026-03-31T23:59:59Z")

    async def test_zero_revenue_needs_no_rate(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "ACME-001", amount="0")

        response = await api.patch("/v1/tenant", json={"reporting_currency": "EUR"})
        report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

        assert response.status_code == 200, response.text
        assert report.status_code == 200, report.text
        assert report.json()["total_revenue"] == "0.00"

    async def test_same_currency_allowed_with_revenue(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "ACME-001")

        response = await api.patch("/v1/tenant", json={"reporting_currency": "USD"})

        assert response.status_code == 200, response.text

    async def test_new_currency_governs_revenue(self, api: httpx.AsyncClient) -> None:
        await api.patch("/v1/tenant", json={"reporting_currency": "JPY"})
        jpy_update = {
            "account_external_id": "JP-1",
            "currency": "JPY",
            "effective_at": "2026-01-01T00:00:00Z",
        }

        whole = await api.post(
            "/v1/revenue-updates", json={"updates": [{**jpy_update, "amount": 1500}]}
        )
        fraction = await api.post(
            "/v1/revenue-updates", json={"updates": [{**jpy_update, "amount": "1500.5"}]}
        )
        dollars = await api.post(
            "/v1/revenue-updates",
            json={
                "updates": [
                    {
                        **jpy_update,
                        "account_external_id": "US-1",
                        "amount": "15.50",
                        "currency": "USD",
                    }
                ]
            },
        )

        assert whole.status_code == 200, whole.text
        assert_problem(fraction, 422)
        assert dollars.status_code == 200, dollars.text
        account = (await api.get("/v1/accounts/JP-1")).json()
        assert account["revenue"]["amount"] == "1500"
        assert account["revenue"]["currency"] == "JPY"


class TestTenantIsolation:
    async def test_account_detail_is_404(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "ACME-001")

        response = await other_api.get("/v1/accounts/ACME-001")

        assert_problem(response, 404)

    async def test_account_list_excludes_others(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "ACME-001")

        response = await other_api.get("/v1/accounts")

        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None}

    async def test_put_same_id_creates_own_account(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "ACME-001", amount="1000.00")

        response = await other_api.put("/v1/accounts/ACME-001", json={"name": "Other Acme"})

        assert response.status_code == 201, response.text
        assert response.json()["revenue"] is None
        mine = (await api.get("/v1/accounts/ACME-001")).json()
        assert mine["name"] == "Account ACME-001"
        assert mine["revenue"]["amount"] == "1000.00"

    async def test_revenue_update_creates_own_account(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "ACME-001", amount="1000.00")

        response = await other_api.post(
            "/v1/revenue-updates",
            json={
                "updates": [
                    {
                        "account_external_id": "ACME-001",
                        "amount": "5.00",
                        "currency": "USD",
                        "effective_at": "2025-12-01T00:00:00Z",
                    }
                ]
            },
        )

        assert response.status_code == 200, response.text
        assert response.json()["created"] == 1
        mine = (await api.get("/v1/accounts/ACME-001")).json()
        assert mine["revenue"]["amount"] == "1000.00"
        assert len(mine["revenue_history"]) == 1

    async def test_response_detail_is_404(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await post_response(api, "r1", "ACME-001")

        response = await other_api.get("/v1/responses/native/r1")

        assert_problem(response, 404)

    async def test_response_list_excludes_others(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "ACME-001")
        await post_response(api, "r1", "ACME-001")

        unfiltered = await other_api.get("/v1/responses")
        by_account = await other_api.get("/v1/responses", params={"account": "ACME-001"})

        assert unfiltered.json()["items"] == []
        assert by_account.json()["items"] == []

    async def test_same_response_id_is_separate(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await post_response(api, "r1", "ACME-001", score=9)

        await post_response(other_api, "r1", "ACME-001", score=2)

        mine = (await api.get("/v1/responses/native/r1")).json()
        theirs = (await other_api.get("/v1/responses/native/r1")).json()
        assert mine["score"] == 9
        assert theirs["score"] == 2

    async def test_response_not_matched_across_tenants(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await post_response(api, "r1", "ACME-001")

        await put_account(other_api, "ACME-001")

        mine = (await api.get("/v1/responses/native/r1")).json()
        assert mine["account_external_id"] is None
        coverage = (await api.get("/v1/coverage", params={"period": "2026-Q1"})).json()
        assert coverage["responses"]["unmatched"] == 1

    async def test_coverage_excludes_others(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "ACME-001", amount="1000.00")
        await post_response(api, "r1", "ACME-001")

        response = await other_api.get("/v1/coverage", params={"period": "2026-Q1"})

        body = response.json()
        assert body["total_revenue"] == "0.00"
        assert body["accounts"] == {"total": 0, "covered": 0}
        assert body["responses"] == {"scored": 0, "unmatched": 0}

    async def test_webhook_endpoint_list_excludes_others(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        created = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": WEBHOOK_SECRET}
        )
        assert created.status_code == 201, created.text

        response = await other_api.get("/v1/webhook-endpoints")

        assert response.json() == {"items": [], "next_cursor": None}

    async def test_forged_webhook_endpoint_is_404(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        # The endpoint id contains its tenant's id. Another tenant's id in its place must not
        # find the endpoint.
        created = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": WEBHOOK_SECRET}
        )
        endpoint_id = created.json()["id"]
        other_id, _ = await make_tenant(app, "other")
        scheme, _, random_part = endpoint_id.split("_")
        forged = f"{scheme}_{other_id.hex}_{random_part}"

        response = await client.post(f"/v1/webhooks/{forged}", content=b"{}")

        assert_problem(response, 404)


async def test_concurrent_setting_changes_apply_in_turn(
    api: httpx.AsyncClient, app: FastAPI
) -> None:
    # Each change alone is valid, and both together would put at_risk_below above safe_above.
    tenant_id = (await api.get("/v1/tenant")).json()["id"]
    await api.patch(
        "/v1/tenant", json={"account_nps_safe_above": 30, "account_nps_at_risk_below": 0}
    )
    async with session_scope(app.state.sessionmaker) as blocker:
        # Holding the row makes both requests read the tenant before either writes it.
        await blocker.execute(
            text("SELECT 1 FROM tenants WHERE id = :id FOR NO KEY UPDATE"), {"id": tenant_id}
        )
        changes = asyncio.gather(
            api.patch("/v1/tenant", json={"account_nps_safe_above": 10}),
            api.patch("/v1/tenant", json={"account_nps_at_risk_below": 20}),
        )
        await asyncio.sleep(0.5)
        await blocker.rollback()
    first, second = await changes
    tenant = (await api.get("/v1/tenant")).json()
    audit = (await api.get("/v1/audit-events")).json()["items"]
    events = [event for event in audit if event["action"] == "tenant.updated"]

    assert sorted([first.status_code, second.status_code]) == [200, 422]
    assert tenant["account_nps_at_risk_below"] <= tenant["account_nps_safe_above"]
    assert len(events) == 2
    assert events[1]["details"]["from"] == {
        field: events[0]["details"]["to"][field] for field in events[1]["details"]["fields"]
    }
