"""Tables that grow fast get fresh statistics: after the commit of a large batch, and at
the periodic check.

Each test runs on a database of its own, migrated and empty, as a new installation is:
there the tables have never been analyzed, which is when stale plans cost the most.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from app.db import statistics
from app.db.statistics import run_statistics_loop
from app.main import create_app
from app.settings import Settings
from tests.conftest import make_tenant, plain_dsn
from tests.helpers import client_with_key


@pytest.fixture
async def own_api(own_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_tenant(own_app)
    async with client_with_key(own_app, key) as client:
        yield client


async def _last_analyzed(database_url: str) -> dict[str, datetime | None]:
    """When each watched table was last analyzed by a statement (not by autovacuum)."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname = ANY($1)",
            list(statistics.WATCHED_TABLES),
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
    # Below MIN_ROWS inserted rows (accounts and records together) nothing is analyzed.
    small = statistics.MIN_ROWS // 2 - 1
    await _post_revenue(own_api, range(small))
    never = await _last_analyzed(migrated_database)
    assert never["accounts"] is None
    assert never["revenue_records"] is None

    # MIN_ROWS new accounts, each with a record: both tables.
    await _post_revenue(own_api, range(small, small + statistics.MIN_ROWS))
    first = await _last_analyzed(migrated_database)
    assert first["accounts"] is not None
    assert first["revenue_records"] is not None

    # A second record for each account: the records grew again.
    await _post_revenue(own_api, range(small + statistics.MIN_ROWS), "2026-02-01T00:00:00Z")
    second = await _last_analyzed(migrated_database)
    assert second["revenue_records"] is not None
    assert second["revenue_records"] > first["revenue_records"]


async def test_locked_table_skipped_others_analyzed(
    own_api: httpx.AsyncClient, migrated_database: str
) -> None:
    # The lock an ANALYZE or VACUUM of accounts takes, held by another session.
    holder = await asyncpg.connect(plain_dsn(migrated_database))
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE accounts IN SHARE UPDATE EXCLUSIVE MODE")
            with capture_logs() as logs:
                await _post_revenue(own_api, range(statistics.MIN_ROWS))
    finally:
        await holder.close()

    analyzed = await _last_analyzed(migrated_database)
    assert analyzed["accounts"] is None
    assert analyzed["revenue_records"] is not None
    events = {entry["event"]: entry for entry in logs}
    assert events["statistics.analyzed"]["tables"] == ["revenue_records"]
    assert events["statistics.analyze_skipped"]["tables"] == ["accounts"]


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


async def test_check_analyzes_trickled_responses(
    migrated_database: str, settings: Settings
) -> None:
    checking = settings.model_copy(update={"statistics_check_interval_seconds": 0.2})
    application = create_app(checking, database_url=migrated_database)
    async with application.router.lifespan_context(application):
        _, key = await make_tenant(application)
        async with client_with_key(application, key) as api:
            # 3 batches of 40: each below MIN_ROWS, together above autovacuum's 50 rows.
            for batch in range(3):
                items = [
                    {
                        "source": "native",
                        "response_id": f"r-{batch}-{index}",
                        "email": f"person{index}@example.com",
                        "score": index % 11,
                        "submitted_at": "2026-02-01T12:00:00Z",
                    }
                    for index in range(40)
                ]
                response = await api.post("/v1/responses", json={"responses": items})
                assert response.status_code == 200, response.text

        deadline = time.monotonic() + 30
        while (await _last_analyzed(migrated_database))["responses"] is None:
            assert time.monotonic() < deadline, "responses not analyzed within 30 s"
            await asyncio.sleep(0.2)


async def test_check_interval_zero_stops_loop(own_app: FastAPI) -> None:
    await asyncio.wait_for(run_statistics_loop(own_app.state.engine, 0), timeout=5)
