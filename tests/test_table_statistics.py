"""A request that grows a young table by much leaves it analyzed before the response.

Each test runs on a database of its own, migrated and empty, as a new installation is:
there the tables have never been analyzed, which is when stale plans cost the most.
"""

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.db import statistics
from tests.conftest import make_tenant, plain_dsn
from tests.helpers import client_with_key


@pytest.fixture
async def own_api(own_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_tenant(own_app)
    async with client_with_key(own_app, key) as client:
        yield client


async def _last_analyzed(database_url: str) -> dict[str, datetime | None]:
    """When each tracked table was last analyzed by a statement (not by autovacuum)."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname = ANY($1)",
            sorted(statistics.TABLES),
        )
    finally:
        await connection.close()
    return {row["relname"]: row["last_analyze"] for row in rows}


async def _post_revenue(
    api: httpx.AsyncClient, accounts: range, effective_at: str = "2026-01-01T00:00:00Z"
) -> None:
    updates = [
        {
            "account_external_id": f"ACC-{index:06d}",
            "amount": "1000.00",
            "currency": "USD",
            "effective_at": effective_at,
        }
        for index in accounts
    ]
    response = await api.post("/v1/revenue-updates", json={"updates": updates})
    assert response.status_code == 200, response.text


async def test_revenue_batch_analyzes_grown_tables(
    own_api: httpx.AsyncClient, migrated_database: str
) -> None:
    # Below MIN_ROWS nothing is analyzed.
    await _post_revenue(own_api, range(statistics.MIN_ROWS - 1))
    never = await _last_analyzed(migrated_database)
    assert never["accounts"] is None
    assert never["revenue_records"] is None

    # MIN_ROWS new accounts, each with a record: both tables.
    await _post_revenue(own_api, range(statistics.MIN_ROWS - 1, 2 * statistics.MIN_ROWS - 1))
    first = await _last_analyzed(migrated_database)
    assert first["accounts"] is not None
    assert first["revenue_records"] is not None

    # New records of the same accounts: only the records grew.
    await _post_revenue(
        own_api, range(statistics.MIN_ROWS, 2 * statistics.MIN_ROWS), "2026-02-01T00:00:00Z"
    )
    second = await _last_analyzed(migrated_database)
    assert second["accounts"] == first["accounts"]
    assert second["revenue_records"] is not None
    assert second["revenue_records"] > first["revenue_records"]


async def test_small_growth_skips_analyze(
    own_api: httpx.AsyncClient, migrated_database: str
) -> None:
    await _post_revenue(own_api, range(10_000))
    grown = await _last_analyzed(migrated_database)
    assert grown["accounts"] is not None

    # 1,000 more accounts are a tenth of the 10,000 analyzed, not more than a tenth.
    await _post_revenue(own_api, range(10_000, 11_000))
    assert (await _last_analyzed(migrated_database))["accounts"] == grown["accounts"]

    # 1,001 more are more than a tenth.
    await _post_revenue(own_api, range(11_000, 12_001))
    later = (await _last_analyzed(migrated_database))["accounts"]
    assert later is not None
    assert later > grown["accounts"]


async def test_response_batch_analyzes_responses(
    own_api: httpx.AsyncClient, migrated_database: str
) -> None:
    items = [
        {
            "source": "native",
            "response_id": f"r-{index}",
            "email": f"person{index}@example.com",
            "score": index % 11,
            "submitted_at": "2026-02-01T12:00:00Z",
        }
        for index in range(statistics.MIN_ROWS)
    ]
    response = await own_api.post("/v1/responses", json={"responses": items})
    assert response.status_code == 200, response.text
    assert response.json()["created"] == statistics.MIN_ROWS
    assert (await _last_analyzed(migrated_database))["responses"] is not None
