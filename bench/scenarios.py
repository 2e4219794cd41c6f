"""The measured scenarios: webhook ingest, bulk revenue updates and reports.

Each scenario measures revcov and its baseline in the same run, so the ratio between
them holds up on a shared machine where absolute times drift.
"""

import asyncio
import json
import random
import statistics
import string
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import httpx

from app.demo import typeform_signature
from bench import load
from bench.generate import Quarter, long_tailed_revenue

LOOPBACK = "127.0.0.1"
CLOSED_LOOP_CONCURRENCY = 32
WARMUP_REQUESTS = 100
BULK_BATCH_ROWS = 10_000
BULK_CONCURRENCY = 2
REPORT_TIMEOUT_SECONDS = 900.0


@dataclass(frozen=True)
class IngestFigures:
    revcov_max: load.LoadResult
    baseline_max: load.LoadResult
    revcov_half: load.LoadResult
    baseline_half: load.LoadResult


@dataclass(frozen=True)
class BulkFigures:
    rows: int
    api_seconds: float
    copy_seconds: float


def _typeform_body(rng: random.Random, account_ref: str, quarter: Quarter) -> bytes:
    token = "".join(rng.choices(string.ascii_uppercase + string.digits, k=26))
    submitted_at = quarter.start + timedelta(seconds=rng.random() * 86_400 * 90)
    score = min(10, max(0, round(rng.gauss(7.5, 2))))
    payload = {
        "event_id": token,
        "event_type": "form_response",
        "form_response": {
            "form_id": "bench",
            "token": token,
            "landed_at": (submitted_at - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "submitted_at": submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hidden": {"account_id": account_ref},
            "definition": {"id": "bench", "title": "Quarterly NPS", "fields": []},
            "answers": [
                {
                    "type": "number",
                    "number": score,
                    "field": {"id": "nps", "type": "opinion_scale", "ref": "nps_score"},
                },
                {
                    "type": "text",
                    "text": "Support answers quickly.",
                    "field": {"id": "why", "type": "long_text", "ref": "nps_reason"},
                },
                {
                    "type": "email",
                    "email": f"person{rng.randrange(5)}@{account_ref}.example",
                    "field": {"id": "mail", "type": "email", "ref": "contact_email"},
                },
            ],
        },
    }
    return json.dumps(payload).encode()


def signed_deliveries(
    rng: random.Random,
    count: int,
    *,
    port: int,
    path: str,
    secret: str,
    account_refs: Sequence[str],
    quarter: Quarter,
) -> list[bytes]:
    """Build `count` signed Typeform deliveries as raw HTTP requests."""
    requests = []
    for _ in range(count):
        body = _typeform_body(rng, rng.choice(account_refs), quarter)
        headers = {
            "Content-Type": "application/json",
            "Typeform-Signature": typeform_signature(secret, body),
        }
        requests.append(load.build_request(LOOPBACK, port, path, headers, body))
    return requests


async def ingest(
    *,
    seed: int,
    requests: int,
    half_rate_seconds: float,
    revcov_port: int,
    revcov_path: str,
    baseline_port: int,
    secret: str,
    account_refs: Sequence[str],
    quarter: Quarter,
) -> IngestFigures:
    """Measure maximum throughput (closed loop), then latency at half that rate (open loop)."""
    rng = random.Random(f"{seed}:ingest")

    def prepared(port: int, path: str, count: int) -> list[bytes]:
        return signed_deliveries(
            rng,
            count,
            port=port,
            path=path,
            secret=secret,
            account_refs=account_refs,
            quarter=quarter,
        )

    for port, path in ((baseline_port, "/webhook"), (revcov_port, revcov_path)):
        await load.closed_loop(
            LOOPBACK, port, prepared(port, path, WARMUP_REQUESTS), CLOSED_LOOP_CONCURRENCY
        )

    baseline_max = await load.closed_loop(
        LOOPBACK,
        baseline_port,
        prepared(baseline_port, "/webhook", requests),
        CLOSED_LOOP_CONCURRENCY,
    )
    revcov_max = await load.closed_loop(
        LOOPBACK,
        revcov_port,
        prepared(revcov_port, revcov_path, requests),
        CLOSED_LOOP_CONCURRENCY,
    )

    half_results = []
    for port, path, maximum in (
        (baseline_port, "/webhook", baseline_max),
        (revcov_port, revcov_path, revcov_max),
    ):
        rate = maximum.throughput / 2
        count = max(10, round(rate * half_rate_seconds))
        half_results.append(await load.open_loop(LOOPBACK, port, prepared(port, path, count), rate))
    return IngestFigures(
        revcov_max=revcov_max,
        baseline_max=baseline_max,
        baseline_half=half_results[0],
        revcov_half=half_results[1],
    )


def bulk_rows(
    seed: int, rows: int, quarters: Sequence[Quarter]
) -> list[tuple[str, Decimal, datetime]]:
    """Generate `rows` revenue updates: 4 quarterly records for each of rows / 4 accounts."""
    rng = random.Random(f"{seed}:bulk")
    updates = []
    for index in range(rows // 4):
        revenue = long_tailed_revenue(rng)
        for quarter in quarters[-4:]:
            factor = Decimal(str(round(rng.uniform(0.8, 1.3), 2)))
            updates.append(
                (f"bulk-{index:07d}", (revenue * factor).quantize(Decimal("0.01")), quarter.start)
            )
    return updates


async def bulk_via_api(
    base_url: str, api_key: str, updates: Sequence[tuple[str, Decimal, datetime]]
) -> float:
    """POST the updates in batches of 10,000, two at a time; return the elapsed seconds."""
    bodies = [
        json.dumps(
            {
                "updates": [
                    {
                        "account_external_id": external_id,
                        "account_name": external_id,
                        "amount": str(amount),
                        "currency": "USD",
                        "effective_at": effective_at.isoformat(),
                    }
                    for external_id, amount, effective_at in updates[
                        start : start + BULK_BATCH_ROWS
                    ]
                ]
            }
        ).encode()
        for start in range(0, len(updates), BULK_BATCH_ROWS)
    ]
    pending = iter(bodies)
    created = 0
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal created
        for body in pending:
            response = await client.post("/v1/revenue-updates", content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(
                    f"POST /v1/revenue-updates returned {response.status_code}: "
                    f"{response.text[:300]}"
                )
            created += response.json()["created"]

    async with httpx.AsyncClient(base_url=base_url, timeout=REPORT_TIMEOUT_SECONDS) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(BULK_CONCURRENCY)))
        seconds = time.perf_counter() - started
    if created != len(updates):
        raise RuntimeError(f"the API created {created} revenue records, expected {len(updates)}")
    return seconds


# Creates the unknown accounts, then inserts or overwrites their revenue records, as the
# API does, in one statement.
MERGE = """
WITH staged_accounts AS (
    SELECT DISTINCT ON (external_id) external_id, account_name
    FROM bench_staging ORDER BY external_id
), created AS (
    INSERT INTO accounts (tenant_id, external_id, name)
    SELECT $1, external_id, account_name FROM staged_accounts
    ON CONFLICT (tenant_id, external_id) DO NOTHING
    RETURNING id, external_id
), known AS (
    SELECT id, external_id FROM created
    UNION ALL
    SELECT a.id, a.external_id FROM accounts a JOIN staged_accounts s USING (external_id)
    WHERE a.tenant_id = $1
)
INSERT INTO revenue_records (tenant_id, account_id, effective_at, amount, currency)
SELECT $1, known.id, s.effective_at, s.amount, s.currency
FROM bench_staging s JOIN known USING (external_id)
ON CONFLICT (tenant_id, account_id, effective_at) DO UPDATE
SET amount = excluded.amount, currency = excluded.currency, recorded_at = now()
WHERE revenue_records.amount <> excluded.amount OR revenue_records.currency <> excluded.currency
"""


async def bulk_via_copy(
    dsn: str, tenant_id: uuid.UUID, updates: Sequence[tuple[str, Decimal, datetime]]
) -> float:
    """COPY the updates into a staging table and merge them in one statement; return seconds."""
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await connection.execute(
                "CREATE TEMPORARY TABLE bench_staging (external_id text, account_name text, "
                "amount numeric, currency text, effective_at timestamptz) ON COMMIT DROP"
            )
            await connection.copy_records_to_table(
                "bench_staging",
                records=[
                    (external_id, external_id, amount, "USD", effective_at)
                    for external_id, amount, effective_at in updates
                ],
                columns=["external_id", "account_name", "amount", "currency", "effective_at"],
            )
            status = await connection.execute(MERGE, tenant_id)
        seconds = time.perf_counter() - started
    finally:
        await connection.close()
    if status != f"INSERT 0 {len(updates)}":
        raise RuntimeError(f"the merge reported {status!r}, expected {len(updates)} rows")
    return seconds


def report_paths(quarters: Sequence[Quarter]) -> dict[str, str]:
    period = quarters[-1].label
    return {
        "coverage": f"/v1/coverage?period={period}",
        "segments": f"/v1/coverage/segments?period={period}&by=region",
        "trend": f"/v1/coverage/trend?from={quarters[0].label}&to={period}",
        "at-risk": f"/v1/reports/at-risk?period={period}&limit=100",
        "survey-next": f"/v1/reports/survey-next?period={period}&limit=100",
    }


# The floor of any correct coverage report: the sum of each account's revenue in force at the end.
REVENUE_SUM = """
SELECT sum(amount) FROM (
    SELECT DISTINCT ON (account_id) amount FROM revenue_records
    WHERE tenant_id = $1 AND effective_at < $2
    ORDER BY account_id, effective_at DESC
) AS in_force
"""


async def reports(
    base_url: str,
    dsn: str,
    tenant_id: uuid.UUID,
    api_key: str,
    quarters: Sequence[Quarter],
    repeats: int,
    warmup: bool,
) -> dict[str, float]:
    """Return the median seconds of each report and of the revenue sum (`sum`).

    With `warmup`, a first round that is not counted warms the caches.
    """
    paths = report_paths(quarters)
    timings: dict[str, list[float]] = {name: [] for name in ("sum", *paths)}
    headers = {"Authorization": f"Bearer {api_key}"}
    connection = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=REPORT_TIMEOUT_SECONDS
        ) as client:
            first_counted = 1 if warmup else 0
            for round_index in range(repeats + first_counted):
                started = time.perf_counter()
                await connection.fetchval(REVENUE_SUM, tenant_id, quarters[-1].end)
                elapsed = time.perf_counter() - started
                if round_index >= first_counted:
                    timings["sum"].append(elapsed)
                for name, path in paths.items():
                    started = time.perf_counter()
                    response = await client.get(path)
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200:
                        raise RuntimeError(
                            f"GET {path} returned {response.status_code}: {response.text[:300]}"
                        )
                    if round_index >= first_counted:
                        timings[name].append(elapsed)
    finally:
        await connection.close()
    return {name: statistics.median(values) for name, values in timings.items()}
