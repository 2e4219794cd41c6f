"""Tenant isolation on every route, derived from the app's route table.

A first tenant creates one object of each kind. A second tenant, whose key has every
scope, then calls every route of the app against the first tenant's objects. A route that
addresses an object by id returns 404. A route that writes by a natural key (an account's
external id) writes the second tenant's own object. A list or report shows none of the
first tenant's rows. In every case the first tenant's rows, compared as
a digest of each table, are unchanged.

A route added to the app without an entry in `ROUTES`, or with a path parameter missing
from `PATH_VALUES`, fails `TestMatrixCoversRouteTable`, so every new route is checked here.
"""

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from tests.conftest import make_tenant
from tests.helpers import assert_problem, client_with_key
from tests.tenant_data import tenant_snapshot

PERIOD = "2026-Q1"
TYPEFORM_SECRET = "isolation-first-tenant-secret"
OTHER_TYPEFORM_SECRET = "isolation-second-tenant-secret"


@dataclass(frozen=True)
class FirstTenant:
    """The first tenant's objects: ids the second tenant may send, and content markers
    that only the first tenant ever sent."""

    tenant_id: uuid.UUID
    key: str
    external_id: str
    email: str
    source: str
    response_id: str
    endpoint_id: str
    delivery_id: int
    key_id: str
    token_id: str
    markers: tuple[str, ...]

    @property
    def identifiers(self) -> tuple[str, ...]:
        return (
            self.external_id,
            self.email,
            self.response_id,
            self.endpoint_id,
            self.key_id,
            self.token_id,
        )


# How to fill each path parameter with the first tenant's object. A route with a
# parameter not listed here fails the suite until its object is added.
PATH_VALUES: dict[str, Callable[[FirstTenant], str]] = {
    "external_id": lambda first: first.external_id,
    "account_external_id": lambda first: first.external_id,
    "email": lambda first: first.email,
    "source": lambda first: first.source,
    "response_id": lambda first: first.response_id,
    "endpoint_id": lambda first: first.endpoint_id,
    "delivery_id": lambda first: str(first.delivery_id),
    "key_id": lambda first: first.key_id,
    "token_id": lambda first: first.token_id,
}

Outcome = Literal["not_found", "own_namespace", "lists_nothing", "probe", "bad_signature"]
Body = Callable[[FirstTenant], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """What the second tenant sends to a route, and what isolation means there.

    - not_found: the route addresses the first tenant's object by id; 404.
    - own_namespace: the route writes by a natural key or into the caller's own tenant;
      a 2xx that touches only the second tenant.
    - lists_nothing: a list or report; a 2xx that contains none of the first tenant's
      identifiers or content.
    - probe: the public existence check of a webhook URL; 200 with an empty body.
    - bad_signature: the webhook receive route, signed with the second tenant's secret; 401.
    """

    outcome: Outcome
    body: Body | None = None
    query: dict[str, str] = field(default_factory=dict)


def _revenue(first: FirstTenant) -> dict[str, Any]:
    return {
        "updates": [
            {
                "account_external_id": first.external_id,
                "amount": "5.00",
                "currency": "USD",
                "effective_at": "2026-01-15T00:00:00Z",
            }
        ]
    }


def _responses(first: FirstTenant) -> dict[str, Any]:
    return {
        "responses": [
            {
                "source": first.source,
                "response_id": first.response_id,
                "account_external_id": first.external_id,
                "email": first.email,
                "score": 10,
                "submitted_at": "2026-02-20T00:00:00Z",
            }
        ]
    }


def _fixed(body: dict[str, Any]) -> Body:
    return lambda first: body


ROUTES: dict[tuple[str, str], Case] = {
    ("GET", "/"): Case("lists_nothing"),
    ("HEAD", "/"): Case("lists_nothing"),
    ("HEAD", "/healthz"): Case("lists_nothing"),
    ("HEAD", "/readyz"): Case("lists_nothing"),
    ("GET", "/healthz"): Case("lists_nothing"),
    ("GET", "/readyz"): Case("lists_nothing"),
    ("GET", "/metrics"): Case("lists_nothing"),
    ("GET", "/dashboard"): Case("lists_nothing"),
    ("HEAD", "/dashboard"): Case("lists_nothing"),
    ("GET", "/docs"): Case("lists_nothing"),
    ("HEAD", "/docs"): Case("lists_nothing"),
    ("GET", "/docs/oauth2-redirect"): Case("lists_nothing"),
    ("GET", "/redoc"): Case("lists_nothing"),
    ("HEAD", "/redoc"): Case("lists_nothing"),
    ("GET", "/v1/tenant"): Case("lists_nothing"),
    ("PATCH", "/v1/tenant"): Case("own_namespace", _fixed({"timezone": "Europe/Paris"})),
    ("GET", "/v1/api-keys"): Case("lists_nothing"),
    ("POST", "/v1/api-keys"): Case("own_namespace", _fixed({"name": "b", "scopes": ["read"]})),
    ("DELETE", "/v1/api-keys/{key_id}"): Case("not_found"),
    ("GET", "/v1/share-tokens"): Case("lists_nothing"),
    ("POST", "/v1/share-tokens"): Case("own_namespace", _fixed({"name": "b"})),
    ("DELETE", "/v1/share-tokens/{token_id}"): Case("not_found"),
    ("GET", "/v1/widgets/coverage.svg"): Case("lists_nothing", query={"period": PERIOD}),
    ("GET", "/v1/accounts"): Case("lists_nothing"),
    ("GET", "/v1/accounts/{external_id}"): Case("not_found"),
    ("PUT", "/v1/accounts/{external_id}"): Case("own_namespace", _fixed({"name": "B"})),
    ("POST", "/v1/accounts/{external_id}/merge"): Case(
        "not_found", lambda first: {"into": first.external_id}
    ),
    ("GET", "/v1/accounts/{external_id}/classification"): Case(
        "not_found", query={"period": PERIOD}
    ),
    ("POST", "/v1/revenue-updates"): Case("own_namespace", _revenue),
    ("PUT", "/v1/fx-rates"): Case(
        "own_namespace",
        _fixed(
            {"rates": [{"currency": "EUR", "rate": "2", "effective_at": "2026-01-01T00:00:00Z"}]}
        ),
    ),
    ("GET", "/v1/fx-rates"): Case("lists_nothing"),
    ("GET", "/v1/contacts"): Case("lists_nothing"),
    ("GET", "/v1/contacts/{email}"): Case("not_found"),
    # The link names the first tenant's account, which the second tenant cannot see.
    ("PUT", "/v1/contacts/{email}"): Case(
        "not_found", lambda first: {"account_external_id": first.external_id}
    ),
    ("DELETE", "/v1/contacts/{email}/accounts/{account_external_id}"): Case("not_found"),
    ("POST", "/v1/responses"): Case("own_namespace", _responses),
    ("GET", "/v1/responses"): Case("lists_nothing"),
    ("GET", "/v1/responses/unmatched"): Case("lists_nothing"),
    ("GET", "/v1/responses/{source}/{response_id}"): Case("not_found"),
    ("POST", "/v1/responses/{source}/{response_id}/assign"): Case(
        "not_found", lambda first: {"account_external_id": first.external_id}
    ),
    ("DELETE", "/v1/responses/{source}/{response_id}"): Case("not_found"),
    ("POST", "/v1/privacy/erase"): Case("own_namespace", lambda first: {"email": first.email}),
    ("GET", "/v1/audit-events"): Case("lists_nothing"),
    ("POST", "/v1/webhook-endpoints"): Case("own_namespace", _fixed({"source": "typeform"})),
    ("GET", "/v1/webhook-endpoints"): Case("lists_nothing"),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): Case("not_found"),
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): Case(
        "not_found", _fixed({"secrets": [OTHER_TYPEFORM_SECRET]})
    ),
    ("POST", "/v1/webhooks/{endpoint_id}"): Case("bad_signature"),
    ("GET", "/v1/webhooks/{endpoint_id}"): Case("probe"),
    ("HEAD", "/v1/webhooks/{endpoint_id}"): Case("probe"),
    ("GET", "/v1/webhook-deliveries"): Case("lists_nothing"),
    ("GET", "/v1/webhook-deliveries/{delivery_id}"): Case("not_found"),
    ("POST", "/v1/webhook-deliveries/{delivery_id}/replay"): Case("not_found"),
    ("GET", "/v1/coverage"): Case("lists_nothing", query={"period": PERIOD}),
    ("GET", "/v1/coverage/segments"): Case(
        "lists_nothing", query={"period": PERIOD, "by": "region"}
    ),
    ("GET", "/v1/coverage/trend"): Case("lists_nothing", query={"from": "2025-Q4", "to": PERIOD}),
    ("GET", "/v1/reports/at-risk"): Case("lists_nothing", query={"period": PERIOD}),
    ("GET", "/v1/reports/survey-next"): Case("lists_nothing", query={"period": PERIOD}),
    ("GET", "/v1/reports/flow"): Case("lists_nothing", query={"from": "2025-Q4", "to": PERIOD}),
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every method and path of the app's API routes, included routers' too."""
    routes: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(getattr(context, "dependant", None), Dependant) and context.path:
            routes.update((method, context.path) for method in context.methods or ())
    return routes


def path_parameters(path: str) -> list[str]:
    return re.findall(r"\{([^}:]+)", path)


class TestMatrixCoversRouteTable:
    def test_every_route_has_case(self, app: FastAPI) -> None:
        missing = sorted(f"{method} {path}" for method, path in app_routes(app) - set(ROUTES))

        assert missing == []

    def test_no_case_for_removed_route(self, app: FastAPI) -> None:
        stale = sorted(f"{method} {path}" for method, path in set(ROUTES) - app_routes(app))

        assert stale == []

    def test_every_path_parameter_has_object(self, app: FastAPI) -> None:
        parameters = {name for _, path in app_routes(app) for name in path_parameters(path)}

        assert parameters - set(PATH_VALUES) == set()

    def test_routes_with_ids_expect_not_found(self) -> None:
        # Only a route that writes by a natural key, and the public webhook routes, may
        # return anything but 404 for another tenant's ids.
        allowed = {
            ("PUT", "/v1/accounts/{external_id}"),
            ("POST", "/v1/webhooks/{endpoint_id}"),
            ("GET", "/v1/webhooks/{endpoint_id}"),
            ("HEAD", "/v1/webhooks/{endpoint_id}"),
        }
        others = {
            route
            for route, case in ROUTES.items()
            if path_parameters(route[1]) and case.outcome != "not_found"
        }

        assert others == allowed


def typeform_delivery(secret: str, token: str, comment: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "event_id": token,
            "event_type": "form_response",
            "form_response": {
                "token": token,
                "submitted_at": "2026-02-12T10:00:00Z",
                "hidden": {"account_id": "UNKNOWN-ACCOUNT"},
                "answers": [
                    {"type": "number", "number": 4, "field": {"type": "nps", "ref": "nps"}},
                    {"type": "text", "text": comment, "field": {"type": "long_text", "ref": "why"}},
                ],
            },
        }
    ).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    signature = "sha256=" + base64.b64encode(digest).decode()
    return body, {"content-type": "application/json", "typeform-signature": signature}


async def create_first_tenant(app: FastAPI) -> FirstTenant:
    """Create a tenant with one object of every kind, through the API."""
    tag = uuid.uuid4().hex[:12]
    tenant_id, key = await make_tenant(app, f"First Tenant {tag}")
    external_id = f"FIRST-{tag}"
    email = f"first-{tag}@example.com"
    source = f"src-{tag}"
    response_id = f"resp-{tag}"
    markers = (
        f"First Account {tag}",
        "424242.42",
        f"first comment {tag}",
        f"first webhook comment {tag}",
        f"first-key-{tag}",
        f"First Tenant {tag}",
        f"first-display-{tag}",
        TYPEFORM_SECRET,
        key,
    )

    async with client_with_key(app, key) as api:
        writes: list[tuple[str, str, dict[str, Any]]] = [
            (
                "PUT",
                f"/v1/accounts/{external_id}",
                {
                    "name": markers[0],
                    "region": "emea",
                    "domains": [f"first-{tag}.example"],
                    "revenue": {
                        "amount": markers[1],
                        "currency": "USD",
                        "effective_at": "2025-12-01T00:00:00Z",
                    },
                },
            ),
            ("PUT", f"/v1/contacts/{email}", {"account_external_id": external_id}),
            (
                "PUT",
                "/v1/fx-rates",
                {
                    "rates": [
                        {"currency": "EUR", "rate": "1.1", "effective_at": "2025-01-01T00:00:00Z"}
                    ]
                },
            ),
            (
                "POST",
                "/v1/responses",
                {
                    "responses": [
                        {
                            "source": source,
                            "response_id": response_id,
                            "account_external_id": external_id,
                            "email": email,
                            "score": 3,
                            "comment": markers[2],
                            "submitted_at": "2026-02-10T12:00:00Z",
                        },
                        {
                            "source": source,
                            "response_id": f"{response_id}-unmatched",
                            "account_external_id": "NO-SUCH-ACCOUNT",
                            "score": 8,
                            "comment": markers[2],
                            "submitted_at": "2026-02-11T12:00:00Z",
                        },
                        {
                            "source": source,
                            "response_id": f"{response_id}-erased",
                            "email": f"erased-{tag}@example.com",
                            "score": 1,
                            "submitted_at": "2026-02-11T12:00:00Z",
                        },
                    ]
                },
            ),
        ]
        for method, url, body in writes:
            written = await api.request(method, url, json=body)
            assert written.status_code in (200, 201), written.text
        erased = await api.post("/v1/privacy/erase", json={"email": f"erased-{tag}@example.com"})
        assert erased.status_code == 200, erased.text
        created_key = await api.post("/v1/api-keys", json={"name": markers[4], "scopes": ["read"]})
        assert created_key.status_code == 201, created_key.text
        created_token = await api.post("/v1/share-tokens", json={"name": markers[6]})
        assert created_token.status_code == 201, created_token.text
        endpoint = await api.post(
            "/v1/webhook-endpoints",
            json={"source": "typeform", "secret": TYPEFORM_SECRET, "score_field": "nps"},
        )
        assert endpoint.status_code == 201, endpoint.text
        endpoint_id = endpoint.json()["id"]
        delivery, headers = typeform_delivery(TYPEFORM_SECRET, f"tok-{tag}", markers[3])
        delivered = await api.post(f"/v1/webhooks/{endpoint_id}", content=delivery, headers=headers)
        assert delivered.status_code == 200, delivered.text
        assert delivered.json()["status"] == "processed", delivered.text

    return FirstTenant(
        tenant_id=tenant_id,
        key=key,
        external_id=external_id,
        email=email,
        source=source,
        response_id=response_id,
        endpoint_id=endpoint_id,
        delivery_id=delivered.json()["delivery_id"],
        key_id=created_key.json()["id"],
        token_id=created_token.json()["id"],
        markers=(*markers, created_token.json()["share_token"]),
    )


@pytest.fixture
async def first(app: FastAPI) -> FirstTenant:
    return await create_first_tenant(app)


@pytest.fixture
async def second(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a new second tenant; its initial key has every scope."""
    _, key = await make_tenant(app, "second")
    async with client_with_key(app, key) as client:
        yield client


def fill_path(path: str, first: FirstTenant) -> str:
    return re.sub(r"\{([^}:]+)\}", lambda match: PATH_VALUES[match[1]](first), path)


async def call_route(
    second: httpx.AsyncClient, method: str, path: str, case: Case, first: FirstTenant
) -> httpx.Response:
    url = fill_path(path, first)
    if case.outcome == "bad_signature":
        delivery, headers = typeform_delivery(OTHER_TYPEFORM_SECRET, "tok-second", "second comment")
        # The webhook route takes no API key; the second tenant's own secret signs.
        return await second.post(url, content=delivery, headers=headers)
    body = case.body(first) if case.body is not None else None
    return await second.request(method, url, params=case.query, json=body)


@pytest.mark.parametrize(("route", "case"), sorted(ROUTES.items()), ids=lambda item: str(item))
async def test_second_tenant_cannot_reach_first(
    app: FastAPI,
    first: FirstTenant,
    second: httpx.AsyncClient,
    route: tuple[str, str],
    case: Case,
) -> None:
    method, path = route
    before = await tenant_snapshot(app, first.tenant_id)

    response = await call_route(second, method, path, case, first)
    after = await tenant_snapshot(app, first.tenant_id)

    assert after == before
    for marker in first.markers:
        assert marker not in response.text
    if case.outcome == "not_found":
        assert_problem(response, 404)
    elif case.outcome == "bad_signature":
        assert_problem(response, 401)
    elif case.outcome == "probe":
        assert response.status_code == 200, response.text
        assert response.content == b""
    else:
        assert response.status_code in (200, 201), response.text
    if case.outcome == "lists_nothing":
        for identifier in first.identifiers:
            assert identifier not in response.text


async def test_second_tenant_writes_own_account(
    first: FirstTenant, second: httpx.AsyncClient
) -> None:
    written = await second.put(f"/v1/accounts/{first.external_id}", json={"name": "B"})

    account = await second.get(f"/v1/accounts/{first.external_id}")
    coverage = await second.get("/v1/coverage", params={"period": PERIOD})

    assert written.status_code == 201, written.text
    assert account.json()["name"] == "B"
    assert account.json()["revenue"] is None
    assert coverage.json()["accounts"]["total"] == 0


@pytest.mark.parametrize(
    "path",
    sorted(
        path
        for (method, path), case in ROUTES.items()
        if method == "GET" and case.outcome == "not_found"
    ),
)
async def test_first_tenant_reads_own_objects(app: FastAPI, first: FirstTenant, path: str) -> None:
    # The 404s above come from the tenant filter: the owner reads the same objects.
    async with client_with_key(app, first.key) as api:
        response = await api.get(fill_path(path, first), params=ROUTES[("GET", path)].query)

    assert response.status_code == 200, response.text
