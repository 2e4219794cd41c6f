"""Concurrency, odd input and crash handling found by attacking the running service."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from app.reports import service as report_service
from tests.helpers import PROBLEM_JSON, add_account, assert_problem


def revenue_batch(external_ids: list[str], amount: str) -> dict[str, Any]:
    return {
        "updates": [
            {
                "account_external_id": external_id,
                "amount": amount,
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            }
            for external_id in external_ids
        ]
    }


def response(response_id: str, score: int, **fields: Any) -> dict[str, Any]:
    return {
        "source": fields.pop("source", "native"),
        "response_id": response_id,
        "score": score,
        "submitted_at": fields.pop("submitted_at", "2026-02-01T00:00:00Z"),
        **fields,
    }


async def test_opposite_orders_no_deadlock(api: httpx.AsyncClient) -> None:
    ids = [f"ACC-{number:03d}" for number in range(200)]
    batches = [
        revenue_batch(ids if number % 2 else list(reversed(ids)), f"{100 + number}.00")
        for number in range(8)
    ]

    results = await asyncio.gather(
        *(api.post("/v1/revenue-updates", json=batch) for batch in batches)
    )

    assert [result.status_code for result in results] == [200] * 8


async def test_responses_opposite_orders_no_deadlock(api: httpx.AsyncClient) -> None:
    items = [response(f"r-{number:03d}", number % 11) for number in range(300)]
    batches = [{"responses": items if number % 2 else list(reversed(items))} for number in range(8)]

    results = await asyncio.gather(*(api.post("/v1/responses", json=batch) for batch in batches))

    assert [result.status_code for result in results] == [200] * 8


async def test_currency_change_during_import(api: httpx.AsyncClient) -> None:
    ids = [f"FX-{number:04d}" for number in range(3000)]

    imported, patched = await asyncio.gather(
        api.post("/v1/revenue-updates", json=revenue_batch(ids, "100.00")),
        api.patch("/v1/tenant", json={"reporting_currency": "EUR"}),
    )
    tenant = (await api.get("/v1/tenant")).json()
    coverage = (await api.get("/v1/coverage", params={"period": "2026-Q1"})).json()

    assert imported.status_code == 200, imported.text
    assert patched.status_code == 200, patched.text
    assert tenant["reporting_currency"] == "EUR"
    # The USD revenue needs a USD rate quoted in EUR, and none was stored.
    assert coverage["status"] == 422
    assert coverage["detail"].startswith("no USD rate in force")


async def test_old_version_after_unversioned(api: httpx.AsyncClient) -> None:
    newest = response("v-1", 9, updated_at="2026-02-02T00:00:00Z")
    older = response("v-1", 3, updated_at="2026-02-01T00:00:00Z")
    unversioned = response("v-1", 5)

    for item in (newest, older, unversioned, older):
        posted = await api.post("/v1/responses", json={"responses": [item]})
        assert posted.status_code == 200, posted.text
    stored = (await api.get("/v1/responses/native/v-1")).json()

    assert stored["score"] == 5


@pytest.mark.parametrize("order", [("zeta", "alpha"), ("alpha", "zeta")])
async def test_tie_broken_by_source(api: httpx.AsyncClient, order: tuple[str, str]) -> None:
    await add_account(api, "TIE")
    scores = {"zeta": 0, "alpha": 10}

    for source in order:
        item = response("r1", scores[source], source=source, account_external_id="TIE")
        posted = await api.post("/v1/responses", json={"responses": [item]})
        assert posted.status_code == 200, posted.text
    coverage = (await api.get("/v1/coverage", params={"period": "2026-Q1"})).json()

    assert coverage["buckets"]["at_risk"]["accounts"] == 1


@pytest.mark.parametrize(
    "attributes",
    [
        '{"x": 1e5000}',
        '{"x": 1e-400}',
        '{"x": 12345678901234567890.5}',
        '{"x": 0.1000000000000000000001}',
        '{"x": "\\ud800"}',
        "{" + '"a": [' * 40 + "1" + "]" * 40 + "}",
    ],
)
async def test_attributes_not_storable(api: httpx.AsyncClient, attributes: str) -> None:
    body = '{"attributes": ' + attributes + "}"

    put = await api.put(
        "/v1/accounts/ATTR", content=body, headers={"Content-Type": "application/json"}
    )
    read = await api.get("/v1/accounts/ATTR")

    assert_problem(put, 422)
    assert read.status_code == 404


async def test_attributes_exact_numbers(api: httpx.AsyncClient) -> None:
    body = '{"attributes": {"seats": 12345678901234567890, "share": 0.1, "nested": [[1.5]]}}'

    put = await api.put(
        "/v1/accounts/ATTR", content=body, headers={"Content-Type": "application/json"}
    )

    assert put.status_code == 201, put.text
    assert put.json()["attributes"] == {
        "seats": 12345678901234567890,
        "share": 0.1,
        "nested": [[1.5]],
    }


async def test_external_id_with_slash(api: httpx.AsyncClient) -> None:
    posted = await api.post("/v1/revenue-updates", json=revenue_batch(["RU/SLASH"], "1.00"))

    problem = assert_problem(posted, 422)
    assert "account_external_id" in problem["detail"]


async def test_plain_text_body_415(api: httpx.AsyncClient) -> None:
    posted = await api.post(
        "/v1/responses", content=b"hello", headers={"Content-Type": "text/plain"}
    )

    problem = assert_problem(posted, 415)
    assert "application/json" in problem["detail"]


@pytest.mark.parametrize("value", [1700000000, "1700000000", 1.5e9])
async def test_numeric_timestamp_rejected(api: httpx.AsyncClient, value: object) -> None:
    item = response("num-ts", 9)
    item["submitted_at"] = value

    posted = await api.post("/v1/responses", json={"responses": [item]})

    assert_problem(posted, 422)


@pytest.mark.parametrize(
    "params",
    [
        {"period": "0000"},
        {"period": "0000-Q1"},
        {"period": "٢٠٢٦-Q1"},
        {"period": "２０２６-Q1"},
        {"period": "2026-Q1", "timezone": "localtime"},
        {"period": "2026-Q1", "timezone": "Factory"},
    ],
)
async def test_period_edge_rejected(api: httpx.AsyncClient, params: dict[str, str]) -> None:
    answered = await api.get("/v1/coverage", params=params)

    assert_problem(answered, 422)


async def test_crash_keeps_request_id(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(report_service, "coverage", explode)

    answered = await api.get("/v1/coverage", headers={"X-Request-ID": "trace-me-123"})

    assert answered.status_code == 500
    assert answered.headers["content-type"] == PROBLEM_JSON
    assert answered.headers["x-request-id"] == "trace-me-123"
    assert "boom" not in answered.text
    assert json.loads(answered.text)["type"] == "urn:revcov:problem:internal-error"
