"""A real `revcov serve` process under load while PostgreSQL restarts, and while the
service itself gets SIGTERM: every acknowledged delivery is stored exactly once.

The tests start the service as a subprocess on a free port of 127.0.0.1 and a PostgreSQL
server of their own (see tests/fault_servers.py). They skip, saying why, where that
server cannot be started.
"""

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.db.embedded import pgdata_path, start_embedded_postgres
from app.db.migrations import upgrade_to_head
from app.db.session import create_engine, create_sessionmaker, session_scope
from app.settings import Settings
from app.tenancy import service as tenant_service
from tests.fault_servers import ControlledPostgres, ServeProcess, serve_env
from tests.webhook_samples import load_sample

pytestmark = pytest.mark.faults

TYPEFORM = load_sample("typeform-form_response")
SECRET = TYPEFORM.signature["test_secret"]
PERIOD = "2026-Q1"
FIRST_SUBMISSION = datetime(2026, 1, 5, tzinfo=UTC)

# The restart test: 7,000 distinct deliveries plus 3,000 repeats of them (30% of the
# sends), from 50 concurrent senders, to 1,000 accounts of which 800 get responses.
DISTINCT_DELIVERIES = 7_000
DUPLICATE_SENDS = 3_000
SENDERS = 50
ACCOUNTS = 1_000
ACCOUNTS_WITH_RESPONSES = 800
# PostgreSQL is stopped once this many sends are acknowledged, and started again after
# DOWNTIME_SECONDS.
RESTART_AFTER_ACKS = 3_000
DOWNTIME_SECONDS = 2.0
# A sender gives up after this many attempts, as platforms do. The backoff doubles from
# 0.1 seconds up to 2 seconds, so a sender keeps trying for two to three minutes.
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class Delivery:
    event_id: str
    token: str
    account: str
    score: int
    submitted_at: datetime
    body: bytes
    headers: dict[str, str]


def _delivery(number: int, account: str, score: int) -> Delivery:
    """A signed Typeform delivery of response `resp-<number>` for `account`."""
    submitted_at = FIRST_SUBMISSION + timedelta(minutes=number)
    payload = copy.deepcopy(json.loads(TYPEFORM.body))
    form_response = payload["form_response"]
    payload["event_id"] = f"evt-{number}"
    form_response["token"] = f"resp-{number}"
    form_response["submitted_at"] = submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    form_response["landed_at"] = form_response["submitted_at"]
    email = f"person-{number}@example.com"
    form_response["hidden"] = {"account_id": account, "user_email": email}
    form_response["answers"][0]["number"] = score
    form_response["answers"][2]["email"] = email
    body = json.dumps(payload).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "Typeform-Signature": "sha256=" + base64.b64encode(digest).decode(),
    }
    return Delivery(
        event_id=payload["event_id"],
        token=form_response["token"],
        account=account,
        score=score,
        submitted_at=submitted_at,
        body=body,
        headers=headers,
    )


@dataclass
class SendLog:
    """What the senders observed: acknowledged event ids and every failed attempt."""

    acknowledged: set[str] = field(default_factory=set)
    acknowledgements: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    abandoned: list[str] = field(default_factory=list)
    # Set once `milestone` sends are acknowledged.
    milestone: int = 0
    milestone_reached: asyncio.Event = field(default_factory=asyncio.Event)


async def _send_until_acknowledged(
    client: httpx.AsyncClient, url: str, delivery: Delivery, log: SendLog
) -> None:
    """Post a delivery as a survey platform does: retry on any non-2xx response or
    connection failure with a short exponential backoff, honouring `Retry-After`."""
    backoff = 0.1
    for _ in range(MAX_ATTEMPTS):
        try:
            response = await client.post(url, content=delivery.body, headers=delivery.headers)
        except httpx.TransportError as error:
            log.failures[type(error).__name__] += 1
        else:
            if response.is_success:
                log.acknowledged.add(delivery.event_id)
                log.acknowledgements += 1
                if log.acknowledgements >= log.milestone:
                    log.milestone_reached.set()
                return
            log.failures[str(response.status_code)] += 1
            if "retry-after" in response.headers:
                backoff = min(float(response.headers["retry-after"]), 2.0)
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, 2.0)
    log.abandoned.append(delivery.event_id)


async def _send_all(
    base_url: str, endpoint_id: str, sends: list[Delivery], senders: int, log: SendLog
) -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for delivery in sends:
        queue.put_nowait(delivery)
    url = f"{base_url}/v1/webhooks/{endpoint_id}"
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def sender() -> None:
            while not queue.empty():
                await _send_until_acknowledged(client, url, queue.get_nowait(), log)

        await asyncio.gather(*(sender() for _ in range(senders)))


def _bucket(score: int) -> str:
    if score <= 6:
        return "at_risk"
    return "passive" if score <= 8 else "safe"


def expected_buckets(
    revenue: dict[str, Decimal], deliveries: list[Delivery], acknowledged: set[str]
) -> dict[str, tuple[Decimal, int]]:
    """Compute each bucket's revenue and accounts from the acknowledged deliveries alone:
    an account's latest scored response in the period decides its bucket."""
    latest: dict[str, Delivery] = {}
    for delivery in deliveries:
        if delivery.event_id not in acknowledged:
            continue
        current = latest.get(delivery.account)
        if current is None or delivery.submitted_at > current.submitted_at:
            latest[delivery.account] = delivery

    buckets = {name: (Decimal("0"), 0) for name in ("at_risk", "passive", "safe", "unaccounted")}
    for account, amount in revenue.items():
        name = _bucket(latest[account].score) if account in latest else "unaccounted"
        total, count = buckets[name]
        buckets[name] = (total + amount, count + 1)
    return buckets


def reported_buckets(report: dict[str, Any]) -> dict[str, tuple[Decimal, int]]:
    return {
        name: (Decimal(bucket["revenue"]), bucket["accounts"])
        for name, bucket in report["buckets"].items()
    }


async def _create_tenant(database_url: str) -> tuple[str, str]:
    engine = create_engine(database_url, Settings(environment="test"))
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            tenant, key = await tenant_service.create_tenant(session, "faults")
    finally:
        await engine.dispose()
    return str(tenant.id), key


def _load_accounts(api: httpx.Client, rng: random.Random) -> dict[str, Decimal]:
    revenue = {
        f"ACC-{number:04d}": Decimal(rng.randrange(100_000, 100_000_000)) / 100
        for number in range(ACCOUNTS)
    }
    updates = [
        {
            "account_external_id": account,
            "account_name": account,
            "amount": str(amount),
            "currency": "USD",
            "effective_at": "2025-12-01T00:00:00Z",
        }
        for account, amount in revenue.items()
    ]
    loaded = api.post("/v1/revenue-updates", json={"updates": updates})
    assert loaded.status_code == 200, loaded.text
    return revenue


def _create_endpoint(api: httpx.Client) -> str:
    created = api.post("/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET})
    assert created.status_code == 201, created.text
    endpoint_id: str = created.json()["id"]
    return endpoint_id


async def _stored_counts(dsn: str, endpoint_id: str, tenant_id: str) -> tuple[Counter[str], ...]:
    """Count the stored deliveries per event id and the stored responses per token."""
    connection = await asyncpg.connect(dsn)
    try:
        deliveries = await connection.fetch(
            "SELECT delivery_key, count(*) AS n FROM webhook_deliveries "
            "WHERE endpoint_id = $1 GROUP BY delivery_key",
            endpoint_id,
        )
        responses = await connection.fetch(
            "SELECT response_id, count(*) AS n FROM responses "
            "WHERE tenant_id = $1 AND source = 'typeform' GROUP BY response_id",
            tenant_id,
        )
    finally:
        await connection.close()
    return (
        Counter({row["delivery_key"]: row["n"] for row in deliveries}),
        Counter({row["response_id"]: row["n"] for row in responses}),
    )


@pytest.fixture(scope="module")
def controlled_postgres() -> Iterator[ControlledPostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="revcov-serve-faults-"))
    server = ControlledPostgres(data_dir)
    try:
        upgrade_to_head(server.url())
        yield server
    finally:
        server.close()
        # The embedded server deletes its own directory inside this one.
        shutil.rmtree(data_dir, ignore_errors=True)


def test_postgres_restart_under_load(
    controlled_postgres: ControlledPostgres, tmp_path: Path
) -> None:
    rng = random.Random(20261205)
    tenant_id, key = asyncio.run(_create_tenant(controlled_postgres.url()))
    serve = ServeProcess(
        serve_env(controlled_postgres.url(), tmp_path / "data"), tmp_path / "serve.log", tmp_path
    )
    try:
        serve.wait_ready()
        with httpx.Client(
            base_url=serve.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as api:
            revenue = _load_accounts(api, rng)
            endpoint_id = _create_endpoint(api)
            accounts = sorted(revenue)[:ACCOUNTS_WITH_RESPONSES]
            deliveries = [
                _delivery(number, rng.choice(accounts), rng.randrange(0, 11))
                for number in range(DISTINCT_DELIVERIES)
            ]
            sends = deliveries + rng.choices(deliveries, k=DUPLICATE_SENDS)
            rng.shuffle(sends)
            log = SendLog(milestone=RESTART_AFTER_ACKS)

            async def restart_postgres_midway() -> int:
                await log.milestone_reached.wait()
                acknowledged_at_stop = log.acknowledgements
                await asyncio.to_thread(controlled_postgres.stop)
                await asyncio.sleep(DOWNTIME_SECONDS)
                await asyncio.to_thread(controlled_postgres.start)
                return acknowledged_at_stop

            async def run() -> int:
                restart = asyncio.create_task(restart_postgres_midway())
                await _send_all(serve.base_url, endpoint_id, sends, SENDERS, log)
                return await restart

            acknowledged_at_stop = asyncio.run(run())
            service_running = serve.process.poll() is None
            report = api.get("/v1/coverage", params={"period": PERIOD})
        stored_deliveries, stored_responses = asyncio.run(
            _stored_counts(controlled_postgres.dsn(), endpoint_id, tenant_id)
        )
    finally:
        serve.close()

    # The restart happened while deliveries were still being sent, and was noticed.
    assert acknowledged_at_stop < len(sends)
    assert log.failures["503"] > 0, log.failures
    # Failed attempts got 503 (the database is down) or 429, never another status such
    # as 500. Connection failures (a keep-alive connection closed by the server as a
    # request is sent, a timeout on a busy machine) are retried like any failure, and the
    # service kept running throughout.
    statuses = {name for name in log.failures if name.isdigit()}
    assert statuses <= {"503", "429"}, f"{log.failures}\n{serve.log()}"
    assert service_running, serve.log()
    assert log.abandoned == []
    assert log.acknowledgements == len(sends)

    # Every acknowledged delivery is stored exactly once, with exactly one response.
    acknowledged_tokens = {f"resp-{event_id.removeprefix('evt-')}" for event_id in log.acknowledged}
    assert set(stored_deliveries) == log.acknowledged
    assert set(stored_deliveries.values()) == {1}
    assert set(stored_responses) == acknowledged_tokens
    assert set(stored_responses.values()) == {1}

    # The coverage report equals the one computed from the acknowledged deliveries.
    assert report.status_code == 200, report.text
    expected = expected_buckets(revenue, deliveries, log.acknowledged)
    assert reported_buckets(report.json()) == expected
    assert Decimal(report.json()["total_revenue"]) == sum(revenue.values())


# The SIGTERM test: deliveries acknowledged before the signal, and deliveries held inside
# the service by a table lock while the signal arrives.
ACKNOWLEDGED_BEFORE = 300
HELD_IN_FLIGHT = 30
SHUTDOWN_DEADLINE_SECONDS = 30


def _embedded_dsn(data_dir: Path) -> str:
    """Return the DSN of the embedded server that `serve` started under `data_dir`, read
    from postmaster.pid without registering this process as a user of the server."""
    lines = (pgdata_path(data_dir) / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/revcov?host={socket_dir}&port={port}"


def _requests_in_progress(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("revcov_http_requests_in_progress "):
            return float(line.split()[1])
    raise AssertionError("revcov_http_requests_in_progress is missing from /metrics")


async def _wait_for_held_requests(dsn: str, base_url: str, count: int) -> None:
    """Wait until a write waits on the lock and `count` requests are in the service.

    Deliveries that arrive during a write queue in the process for the next group commit,
    so one write waits on the lock and the other requests wait for it.
    """
    connection = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            for _ in range(1200):
                waiting = await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'revcov' AND wait_event_type = 'Lock'"
                )
                # The request for /metrics counts itself.
                held = _requests_in_progress((await client.get("/metrics")).text) - 1
                if waiting >= 1 and held >= count:
                    return
                await asyncio.sleep(0.05)
    finally:
        await connection.close()
    pytest.fail(f"fewer than {count} requests were held in the service")


def _create_tenant_with_cli(data_dir: Path, cwd: Path) -> str:
    created = subprocess.run(
        [str(Path(sys.executable).parent / "revcov"), "tenants", "create", "sigterm"],
        env={**os.environ, **serve_env(None, data_dir)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key: str = json.loads(created.stdout)["api_key"]
    return key


def test_sigterm_under_load(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    serve = ServeProcess(
        serve_env(None, data_dir, db_pool_size=HELD_IN_FLIGHT + 5),
        tmp_path / "serve.log",
        tmp_path,
    )
    try:
        serve.wait_ready()
        key = _create_tenant_with_cli(data_dir, tmp_path)
        with httpx.Client(
            base_url=serve.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as api:
            endpoint_id = _create_endpoint(api)
        dsn = _embedded_dsn(data_dir)
        before = [_delivery(number, "ACC-0001", 9) for number in range(ACKNOWLEDGED_BEFORE)]
        held = [
            _delivery(ACKNOWLEDGED_BEFORE + number, "ACC-0001", 3)
            for number in range(HELD_IN_FLIGHT)
        ]
        log = SendLog()

        async def run() -> tuple[list[int], type[Exception] | None, float]:
            await _send_all(serve.base_url, endpoint_id, before, 20, log)

            # A SHARE lock lets reads through and holds every insert of a delivery.
            lock = await asyncpg.connect(dsn)
            transaction = lock.transaction()
            await transaction.start()
            await lock.execute("LOCK TABLE webhook_deliveries IN SHARE MODE")
            url = f"{serve.base_url}/v1/webhooks/{endpoint_id}"
            async with httpx.AsyncClient(timeout=60) as client:
                pending = [
                    asyncio.create_task(
                        client.post(url, content=delivery.body, headers=delivery.headers)
                    )
                    for delivery in held
                ]
                await _wait_for_held_requests(dsn, serve.base_url, HELD_IN_FLIGHT)

                serve.terminate()
                signalled = time.monotonic()
                await asyncio.sleep(1)
                refused: type[Exception] | None = None
                try:
                    await client.post(url, content=b"{}", headers={"Connection": "close"})
                except httpx.TransportError as error:
                    refused = type(error)
                await transaction.rollback()
                await lock.close()
                responses = await asyncio.gather(*pending)
            exited = await asyncio.to_thread(serve.process.wait, SHUTDOWN_DEADLINE_SECONDS)
            assert exited == 0, serve.log()
            return [response.status_code for response in responses], refused, signalled

        statuses, refused, signalled = asyncio.run(run())
        stopped_after = time.monotonic() - signalled
        postmaster_left = (pgdata_path(data_dir) / "postmaster.pid").exists()
    finally:
        serve.close()

    # Requests in flight at the signal completed; new connections were refused.
    assert statuses == [200] * HELD_IN_FLIGHT
    assert refused is not None
    assert stopped_after < SHUTDOWN_DEADLINE_SECONDS
    # The embedded PostgreSQL stopped with the service.
    assert not postmaster_left

    # Nothing acknowledged was lost: every delivery is in the database after a restart.
    embedded = start_embedded_postgres(data_dir)
    try:
        tenant_id = asyncio.run(_fetch_tenant_id(embedded.dsn(), endpoint_id))
        stored_deliveries, stored_responses = asyncio.run(
            _stored_counts(embedded.dsn(), endpoint_id, tenant_id)
        )
    finally:
        embedded.stop()
    acknowledged = log.acknowledged | {delivery.event_id for delivery in held}
    assert set(stored_deliveries) == acknowledged
    assert set(stored_deliveries.values()) == {1}
    assert len(stored_responses) == len(acknowledged)


async def _fetch_tenant_id(dsn: str, endpoint_id: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        tenant_id: str = await connection.fetchval(
            "SELECT tenant_id::text FROM webhook_endpoints WHERE id = $1", endpoint_id
        )
    finally:
        await connection.close()
    return tenant_id
