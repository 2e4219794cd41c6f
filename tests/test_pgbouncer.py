"""The service behind PgBouncer in transaction pooling mode (REVCOV_DATABASE_POOLER=pgbouncer).

PgBouncer runs on a loopback port in front of the test database with fewer server
connections than the service opens, so concurrent requests share server connections
from one transaction to the next. The tests skip when the `pgbouncer` binary is absent
(Debian package `pgbouncer`).
"""

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.db.session import session_scope
from app.main import create_app
from app.settings import Settings
from tests.conftest import make_tenant
from tests.helpers import client_with_key, free_port
from tests.test_webhooks_typeform import SECRET as TYPEFORM_SECRET
from tests.test_webhooks_typeform import sign, variant

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="the pgbouncer binary is not installed (apt-get install pgbouncer)",
)

# PgBouncer refuses to run as root, so as root it switches to this user, or to the owner
# of the backend's socket directory, which only its owner may enter.
UNPRIVILEGED_USER = "nobody"
SERVER_CONNECTIONS = 2
STARTUP_SECONDS = 15.0


def pgbouncer_config(database_url: str, port: int, directory: Path) -> str:
    """Return a pgbouncer.ini that pools `database_url`'s database as `revcov`."""
    url = make_url(database_url)
    host = url.host or str(url.query.get("host", ""))
    backend_port = url.port or int(str(url.query.get("port", "5432")))
    backend = f"host={host} port={backend_port} dbname={url.database} user={url.username}"
    return "\n".join(
        [
            "[databases]",
            f"revcov = {backend}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {directory / 'users.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {SERVER_CONNECTIONS}",
            "max_client_conn = 200",
            f"logfile = {directory / 'pgbouncer.log'}",
            "",
        ]
    )


@contextmanager
def run_pgbouncer(database_url: str) -> Iterator[str]:
    """Run PgBouncer in front of `database_url`'s database; yield the service URL through it."""
    assert PGBOUNCER is not None
    directory = Path(tempfile.mkdtemp(prefix="revcov-pgbouncer-"))
    directory.chmod(0o777)
    port = free_port()
    config = directory / "pgbouncer.ini"
    config.write_text(pgbouncer_config(database_url, port, directory))
    (directory / "users.txt").write_text(f'"{make_url(database_url).username}" ""\n')
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", _unprivileged_user(database_url)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, directory / "pgbouncer.log")
        yield f"postgresql+asyncpg://{make_url(database_url).username}@127.0.0.1:{port}/revcov"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _unprivileged_user(database_url: str) -> str:
    socket_dir = make_url(database_url).query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        return pwd.getpwuid(Path(socket_dir).stat().st_uid).pw_name
    return UNPRIVILEGED_USER


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text() if log_path.exists() else ""
            pytest.fail(f"pgbouncer exited with status {process.returncode}; log:\n{log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"pgbouncer did not listen on 127.0.0.1:{port} within {STARTUP_SECONDS:g} s")


@pytest.fixture(scope="module")
def pgbouncer_url(database_url: str) -> Iterator[str]:
    with run_pgbouncer(database_url) as url:
        yield url


@pytest.fixture(scope="module")
async def pooled_app(pgbouncer_url: str, settings: Settings) -> AsyncIterator[FastAPI]:
    pooled = settings.model_copy(
        update={"database_pooler": "pgbouncer", "db_pool_size": 8, "db_statement_timeout_ms": 7000}
    )
    application = create_app(pooled, database_url=pgbouncer_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def pooled_api(pooled_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_tenant(pooled_app, "pooled")
    async with client_with_key(pooled_app, key) as client:
        yield client


def _revenue_update(account: str, amount: str) -> dict[str, Any]:
    return {
        "account_external_id": account,
        "amount": amount,
        "currency": "USD",
        "effective_at": "2025-12-01T00:00:00Z",
    }


def _response(response_id: str, account: str, score: int) -> dict[str, Any]:
    return {
        "source": "native",
        "response_id": response_id,
        "account_external_id": account,
        "submitted_at": "2026-02-01T12:00:00Z",
        "score": score,
    }


class TestBehindPgBouncer:
    async def test_statement_timeout_set_per_transaction(self, pooled_app: FastAPI) -> None:
        async with session_scope(pooled_app.state.sessionmaker) as session:
            timeout = await session.scalar(text("SHOW statement_timeout"))

        assert timeout == "7s"

    async def test_ingest_and_reports_concurrently(self, pooled_api: httpx.AsyncClient) -> None:
        accounts = [f"POOL-{number:03d}" for number in range(24)]
        updates = await asyncio.gather(
            *(
                pooled_api.post(
                    "/v1/revenue-updates",
                    json={"updates": [_revenue_update(account, "1000.00")]},
                )
                for account in accounts
            )
        )
        responses = await asyncio.gather(
            *(
                pooled_api.post(
                    "/v1/responses",
                    json={"responses": [_response(f"r-{account}", account, 9)]},
                )
                for account in accounts[:12]
            )
        )
        coverages = await asyncio.gather(
            *(pooled_api.get("/v1/coverage", params={"period": "2026-Q1"}) for _ in range(8))
        )

        assert [update.status_code for update in updates] == [200] * len(accounts)
        assert {response.status_code for response in responses} <= {200, 201}
        assert [coverage.status_code for coverage in coverages] == [200] * 8
        bodies = [coverage.json() for coverage in coverages]
        assert all(body == bodies[0] for body in bodies)
        assert bodies[0]["total_revenue"] == "24000.00"
        assert bodies[0]["covered_revenue"] == "12000.00"

    async def test_idempotency_key_replayed(self, pooled_api: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = {"updates": [_revenue_update("POOL-IDEM", "250.00")]}

        first = await pooled_api.post("/v1/revenue-updates", json=body, headers=key)
        second = await pooled_api.post("/v1/revenue-updates", json=body, headers=key)

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        assert second.json() == first.json()
        assert second.headers["Idempotent-Replayed"] == "true"

    async def test_webhook_deliveries_deduplicated(self, pooled_api: httpx.AsyncClient) -> None:
        endpoint = await pooled_api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": TYPEFORM_SECRET}
        )
        assert endpoint.status_code == 201, endpoint.text
        path = f"/v1/webhooks/{endpoint.json()['id']}"
        bodies = [variant(f"POOLED{number:03d}") for number in range(8)]

        acks = await asyncio.gather(
            *(
                pooled_api.post(
                    path,
                    content=body,
                    headers={"Content-Type": "application/json", "Typeform-Signature": sign(body)},
                )
                for body in bodies + bodies
            )
        )
        statuses = sorted(ack.json()["status"] for ack in acks)

        assert [ack.status_code for ack in acks] == [200] * len(acks)
        assert statuses.count("duplicate") == len(bodies)


async def test_default_driver_settings_fail_behind_pgbouncer(database_url: str) -> None:
    """asyncpg caches a prepared statement on its connection, which is why
    REVCOV_DATABASE_POOLER exists: behind PgBouncer the next transaction may run on a
    server connection without it. Here a second client holds the first server connection,
    so the first client's next transaction gets a new one."""
    with run_pgbouncer(database_url) as url:
        engine = create_async_engine(url, poolclass=NullPool)
        other = await asyncpg.connect(url.replace("+asyncpg", ""), statement_cache_size=0)
        try:
            async with engine.connect() as client:
                await client.execute(text("SELECT 1 + :n"), {"n": 1})
                await client.commit()
                async with other.transaction():
                    await other.execute("SELECT 1")
                    with pytest.raises(
                        (DBAPIError, asyncpg.PostgresError), match="prepared statement"
                    ):
                        await client.execute(text("SELECT 1 + :n"), {"n": 1})
        finally:
            await other.close()
            await engine.dispose()
