"""API key scopes: every authenticated route requires one, and a key without it gets 403."""

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from app.tenancy.dependencies import RequireScope, RequireScopeOrShareToken, get_caller
from tests.helpers import assert_problem, client_with_key, create_api_key

# The scope of every authenticated route. A new route must be added here and to the
# README's table, so the documented mapping and the code cannot drift apart.
EXPECTED_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/v1/tenant"): "read",
    ("PATCH", "/v1/tenant"): "admin",
    ("GET", "/v1/api-keys"): "admin",
    ("POST", "/v1/api-keys"): "admin",
    ("DELETE", "/v1/api-keys/{key_id}"): "admin",
    ("GET", "/v1/accounts"): "read",
    ("GET", "/v1/accounts/{external_id}"): "read",
    ("PUT", "/v1/accounts/{external_id}"): "ingest",
    ("POST", "/v1/accounts/{external_id}/merge"): "ingest",
    ("POST", "/v1/revenue-updates"): "ingest",
    ("PUT", "/v1/fx-rates"): "ingest",
    ("GET", "/v1/fx-rates"): "read",
    ("GET", "/v1/contacts"): "read",
    ("GET", "/v1/contacts/{email}"): "read",
    ("PUT", "/v1/contacts/{email}"): "ingest",
    ("DELETE", "/v1/contacts/{email}/accounts/{account_external_id}"): "ingest",
    ("POST", "/v1/responses"): "ingest",
    ("GET", "/v1/responses"): "read",
    ("GET", "/v1/responses/unmatched"): "read",
    ("GET", "/v1/responses/{source}/{response_id}"): "read",
    ("POST", "/v1/responses/{source}/{response_id}/assign"): "ingest",
    ("DELETE", "/v1/responses/{source}/{response_id}"): "admin",
    ("POST", "/v1/privacy/erase"): "admin",
    ("GET", "/v1/audit-events"): "admin",
    ("POST", "/v1/webhook-endpoints"): "admin",
    ("GET", "/v1/webhook-endpoints"): "read",
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): "read",
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): "admin",
    ("GET", "/v1/coverage"): "read",
    ("GET", "/v1/coverage/segments"): "read",
    ("GET", "/v1/coverage/trend"): "read",
    ("GET", "/v1/accounts/{external_id}/classification"): "read",
    ("GET", "/v1/reports/at-risk"): "read",
    ("GET", "/v1/reports/survey-next"): "read",
    ("GET", "/v1/reports/flow"): "read",
    ("GET", "/v1/webhook-deliveries"): "read",
    ("GET", "/v1/webhook-deliveries/{delivery_id}"): "read",
    ("POST", "/v1/webhook-deliveries/{delivery_id}/replay"): "ingest",
    ("GET", "/v1/share-tokens"): "admin",
    ("POST", "/v1/share-tokens"): "admin",
    ("DELETE", "/v1/share-tokens/{token_id}"): "admin",
    # Also open to a share token in the `token` query parameter.
    ("GET", "/v1/widgets/coverage.svg"): "read",
}

# Routes without an API key: health checks, metrics (optionally behind
# REVCOV_METRICS_TOKEN), webhooks, which check the platform's signature instead, and the
# dashboard page, whose script prompts for a key in the browser.
PUBLIC_ROUTES = {
    ("GET", "/"),
    ("HEAD", "/"),
    ("HEAD", "/healthz"),
    ("HEAD", "/readyz"),
    ("GET", "/dashboard"),
    ("HEAD", "/dashboard"),
    ("GET", "/docs"),
    ("HEAD", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("HEAD", "/redoc"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/webhooks/{endpoint_id}"),
    ("GET", "/v1/webhooks/{endpoint_id}"),
    ("HEAD", "/v1/webhooks/{endpoint_id}"),
}

ALL_SCOPES = ("ingest", "read", "admin")


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def _route_methods(app: FastAPI) -> Iterator[tuple[str, str, Dependant]]:
    """Yield each method and path of the app's API routes with the route's dependencies,
    router-wide ones included. FastAPI 0.165 nests included routers, so `app.routes`
    alone lists only their top level."""
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        if isinstance(dependant, Dependant) and context.path is not None:
            for method in sorted(context.methods or ()):
                yield method, context.path, dependant


def required_scopes(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """Map each route that authenticates an API key to the scopes it requires."""
    checks = (RequireScope, RequireScopeOrShareToken)
    scopes: dict[tuple[str, str], set[str]] = {}
    for method, path, dependant in _route_methods(app):
        calls = list(_dependency_calls(dependant))
        if get_caller in calls or any(isinstance(call, checks) for call in calls):
            scopes[(method, path)] = {call.scope for call in calls if isinstance(call, checks)}
    return scopes


def _lookalike_path(path: str) -> str:
    # Any value will do: the scope check runs before path parameters are validated.
    return re.sub(r"\{[^}]+\}", "x", path)


class TestRouteTable:
    def test_every_authenticated_route_has_scope(self, app: FastAPI) -> None:
        unscoped = sorted(
            f"{method} {path}"
            for (method, path), scopes in required_scopes(app).items()
            if not scopes
        )

        assert unscoped == []

    def test_routes_need_exactly_one_scope(self, app: FastAPI) -> None:
        several = sorted(
            f"{method} {path}"
            for (method, path), scopes in required_scopes(app).items()
            if len(scopes) > 1
        )

        assert several == []

    def test_scopes_match_documented_table(self, app: FastAPI) -> None:
        actual = {route: min(scopes) for route, scopes in required_scopes(app).items() if scopes}

        assert actual == EXPECTED_SCOPES

    def test_only_known_routes_are_public(self, app: FastAPI) -> None:
        authenticated = set(required_scopes(app))
        public = {(method, path) for method, path, _ in _route_methods(app)} - authenticated

        assert public == PUBLIC_ROUTES

    def test_get_routes_need_read_or_admin(self) -> None:
        for (method, path), scope in EXPECTED_SCOPES.items():
            if method == "GET":
                assert scope in {"read", "admin"}, path


@pytest.mark.parametrize(("route", "scope"), sorted(EXPECTED_SCOPES.items()))
async def test_key_without_scope_gets_403(
    app: FastAPI, api: httpx.AsyncClient, route: tuple[str, str], scope: str
) -> None:
    method, path = route
    other_scopes = [other for other in ALL_SCOPES if other != scope]
    key = await create_api_key(api, *other_scopes)
    body: dict[str, Any] | None = {} if method in {"POST", "PUT", "PATCH"} else None

    async with client_with_key(app, key) as client:
        response = await client.request(method, _lookalike_path(path), json=body)

    problem = assert_problem(response, 403)
    assert problem["type"] == "urn:revcov:problem:missing-scope"
    assert repr(scope) in problem["detail"]
    assert key not in response.text


class TestScopedKeys:
    async def test_read_key_reads(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = await create_api_key(api, "read")

        async with client_with_key(app, key) as client:
            accounts = await client.get("/v1/accounts")
            tenant = await client.get("/v1/tenant")

        assert accounts.status_code == 200, accounts.text
        assert tenant.status_code == 200, tenant.text

    async def test_read_key_cannot_write(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = await create_api_key(api, "read")

        async with client_with_key(app, key) as client:
            response = await client.put("/v1/accounts/ACME-1", json={"name": "Acme"})

        assert_problem(response, 403)
        assert_problem(await api.get("/v1/accounts/ACME-1"), 404)

    async def test_ingest_key_writes(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = await create_api_key(api, "ingest")
        update = {
            "account_external_id": "ACME-1",
            "amount": "10.00",
            "currency": "USD",
            "effective_at": "2026-01-01T00:00:00Z",
        }

        async with client_with_key(app, key) as client:
            response = await client.post("/v1/revenue-updates", json={"updates": [update]})
            read = await client.get("/v1/accounts/ACME-1")

        assert response.status_code == 200, response.text
        assert_problem(read, 403)
        assert (await api.get("/v1/accounts/ACME-1")).status_code == 200

    async def test_ingest_key_cannot_erase(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = await create_api_key(api, "ingest", "read")

        async with client_with_key(app, key) as client:
            response = await client.post("/v1/privacy/erase", json={"email": "jane@acme.com"})

        problem = assert_problem(response, 403)
        assert "'admin'" in problem["detail"]

    async def test_admin_key_changes_settings(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = await create_api_key(api, "admin")

        async with client_with_key(app, key) as client:
            response = await client.patch("/v1/tenant", json={"coverage_target": "0.7"})

        assert response.status_code == 200, response.text

    async def test_missing_key_still_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/accounts")

        assert_problem(response, 401)
