"""Measure the figures behind the sizing table in docs/scaling.md.

Runs the app in process (ASGI, no HTTP server) against a fresh database on the server that
REVCOV_BENCH_DATABASE_URL names (default: PostgreSQL at 127.0.0.1:5432), loads one tenant,
and prints JSON with:

- batch ingest rates of revenue updates and responses (rows per second),
- the rate of signed Typeform webhook deliveries, 8 in flight at a time,
- the median time of a quarter's coverage report over that tenant, after ANALYZE,
- the on-disk bytes per row of responses, revenue records and webhook deliveries.

Usage: PYTHONPATH=. .venv/bin/python bench/sizing.py [--accounts 20000]
[--responses 200000] [--deliveries 2000]. It drops its database at the end.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.db.migrations import upgrade_to_head
from app.db.session import session_scope
from app.main import create_app
from app.settings import Settings
from app.tenancy import service as tenant_service
from tests.test_webhooks_typeform import SECRET, sign, variant

BATCH = 10_000
IN_FLIGHT = 8


def _plain(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain(url, "postgres"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _analyze(url: str) -> None:
    connection = await asyncpg.connect(_plain(url, make_url(url).database or ""))
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def _post_batches(
    client: httpx.AsyncClient, path: str, key: str, items: list[dict[str, Any]]
) -> float:
    started = time.perf_counter()
    for offset in range(0, len(items), BATCH):
        response = await client.post(path, json={key: items[offset : offset + BATCH]})
        response.raise_for_status()
    return len(items) / (time.perf_counter() - started)


async def _measure(url: str, accounts: int, responses: int, deliveries: int) -> dict[str, Any]:
    settings = Settings(environment="test", log_level="error", log_format="json")
    app = create_app(settings, database_url=url)
    rng = random.Random(20261204)
    quarter_start = datetime(2026, 1, 1, tzinfo=UTC)
    async with app.router.lifespan_context(app):
        async with session_scope(app.state.sessionmaker) as session:
            _, api_key = await tenant_service.create_tenant(session, "sizing")
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=600
        ) as client:
            updates = [
                {
                    "account_external_id": f"ACC-{number:06d}",
                    "amount": f"{rng.randint(10_000, 5_000_000)}.00",
                    "currency": "USD",
                    "effective_at": "2025-12-01T00:00:00Z",
                }
                for number in range(accounts)
            ]
            revenue_rate = await _post_batches(client, "/v1/revenue-updates", "updates", updates)

            items = [
                {
                    "source": "native",
                    "response_id": f"R-{number:08d}",
                    "account_external_id": f"ACC-{rng.randrange(accounts):06d}",
                    "email": f"person{rng.randrange(responses)}@example.com",
                    "score": rng.randint(0, 10),
                    "submitted_at": (
                        quarter_start + timedelta(seconds=rng.randrange(89 * 86400))
                    ).isoformat(),
                }
                for number in range(responses)
            ]
            response_rate = await _post_batches(client, "/v1/responses", "responses", items)

            endpoint = await client.post(
                "/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET}
            )
            endpoint.raise_for_status()
            path = f"/v1/webhooks/{endpoint.json()['id']}"
            bodies = [variant(uuid.uuid4().hex.upper()) for _ in range(deliveries)]
            semaphore = asyncio.Semaphore(IN_FLIGHT)

            async def deliver(body: bytes) -> None:
                async with semaphore:
                    signed = {"Content-Type": "application/json", "Typeform-Signature": sign(body)}
                    response = await client.post(path, content=body, headers=signed)
                    response.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(deliver(body) for body in bodies))
            delivery_rate = deliveries / (time.perf_counter() - started)

            # Autovacuum analyses freshly loaded tables only after a while; without statistics
            # the planner's guesses would make the first reports slower than a steady state.
            await _analyze(url)
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                report = await client.get("/v1/coverage", params={"period": "2026-Q1"})
                report.raise_for_status()
                timings.append(time.perf_counter() - started)

    connection = await asyncpg.connect(_plain(url, make_url(url).database or ""))
    try:
        sizes = {}
        for table in ("responses", "revenue_records", "webhook_deliveries"):
            size = await connection.fetchval(f"SELECT pg_total_relation_size('{table}')")
            rows = await connection.fetchval(f"SELECT count(*) FROM {table}")
            sizes[table] = round(size / rows) if rows else None
    finally:
        await connection.close()

    return {
        "accounts": accounts,
        "responses": responses,
        "deliveries": deliveries,
        "revenue_updates_per_second": round(revenue_rate),
        "responses_per_second": round(response_rate),
        "webhook_deliveries_per_second": round(delivery_rate, 1),
        "coverage_report_median_seconds": round(statistics.median(timings), 3),
        "bytes_per_row": sizes,
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--responses", type=int, default=200_000)
    parser.add_argument("--deliveries", type=int, default=2_000)
    args = parser.parse_args()

    server = os.environ.get(
        "REVCOV_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    name = f"revcov_sizing_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
    database_url = url.render_as_string(hide_password=False)
    try:
        upgrade_to_head(database_url)
        result = asyncio.run(_measure(database_url, args.accounts, args.responses, args.deliveries))
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
