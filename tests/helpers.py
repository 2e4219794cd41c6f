"""Small HTTP helpers shared by the test modules."""

import socket
from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem document with `status`, and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def add_account(api: httpx.AsyncClient, external_id: str, amount: str = "1000.00") -> None:
    """Create an account with `amount` of revenue in force from 2025-12-01."""
    response = await api.put(
        f"/v1/accounts/{external_id}",
        json={
            "revenue": {
                "amount": amount,
                "currency": "USD",
                "effective_at": "2025-12-01T00:00:00Z",
            }
        },
    )
    assert response.status_code == 201, response.text


async def coverage_q1(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/coverage", params={"period": "2026-Q1"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_api_key(api: httpx.AsyncClient, *scopes: str, name: str = "test") -> str:
    """Create an API key with `scopes` through the API, and return the key."""
    response = await api.post("/v1/api-keys", json={"name": name, "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def client_with_key(app: Any, key: str) -> httpx.AsyncClient:
    """An HTTP client for `app` that sends `key` as its bearer token; close it after use."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"},
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
