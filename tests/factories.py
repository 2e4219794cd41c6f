"""Small API helpers that create accounts, responses and contacts and read coverage.

Amounts are USD, the default reporting currency; responses are submitted in 2026-Q1 and
revenue takes effect before it, so `coverage` counts both.
"""

from typing import Any

import httpx

PERIOD = "2026-Q1"
SUBMITTED_AT = "2026-02-10T12:00:00Z"


async def put_account(
    api: httpx.AsyncClient,
    external_id: str,
    *,
    amount: str = "1000.00",
    effective_at: str = "2026-01-01T00:00:00Z",
    domains: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": external_id,
        "revenue": {"amount": amount, "currency": "USD", "effective_at": effective_at},
    }
    if domains is not None:
        body["domains"] = domains
    response = await api.put(f"/v1/accounts/{external_id}", json=body)
    assert response.status_code in (200, 201), response.text
    account: dict[str, Any] = response.json()
    return account


async def post_responses(api: httpx.AsyncClient, *responses: dict[str, Any]) -> dict[str, Any]:
    items = [{"source": "test", "submitted_at": SUBMITTED_AT, **item} for item in responses]
    response = await api.post("/v1/responses", json={"responses": items})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_response(api: httpx.AsyncClient, response_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/responses/test/{response_id}")
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


async def put_contact(
    api: httpx.AsyncClient, email: str, account_external_id: str, role: str | None = None
) -> httpx.Response:
    return await api.put(
        f"/v1/contacts/{email}", json={"account_external_id": account_external_id, "role": role}
    )


async def coverage(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/coverage", params={"period": PERIOD})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report
