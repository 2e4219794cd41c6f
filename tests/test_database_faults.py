"""The service while its database is down, restarting or not responding: 503 with
`Retry-After` in problem+json, `/readyz` false, and recovery without a restart.

These tests stop and start a PostgreSQL server of their own (see tests/fault_servers.py),
so the rest of the suite keeps its database.
"""

import asyncio
import base64
import hashlib
import hmac
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from app.db.migrations import upgrade_to_head
from app.main import create_app
from app.responses.repository import RESOLUTION_LOCK_CLASS
from app.settings import Settings
from tests.conftest import make_tenant
from tests.fault_servers import ControlledPostgres
from tests.helpers import PROBLEM_JSON, assert_problem, client_with_key
from tests.webhook_samples import create_endpoint, load_sample, post_delivery

pytestmark = pytest.mark.faults

TYPEFORM = load_sample("typeform-form_response")
SECRET = TYPEFORM.signature["test_secret"]
# A hung request fails the test instead of hanging the suite.
REQUEST_TIMEOUT = 60


@pytest.fixture(scope="module")
def controlled_postgres() -> Iterator[ControlledPostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="revcov-faults-"))
    server = ControlledPostgres(data_dir)
    try:
        upgrade_to_head(server.url())
        yield server
    finally:
        server.close()
        # The embedded server deletes its own directory inside this one.
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def fault_app(
    controlled_postgres: ControlledPostgres, settings: Settings
) -> AsyncIterator[FastAPI]:
    if not controlled_postgres.running:
        controlled_postgres.start()
    application = create_app(settings, database_url=controlled_postgres.url())
    async with application.router.lifespan_context(application):
        yield application
    if not controlled_postgres.running:
        controlled_postgres.start()


def _signed(number: int) -> tuple[bytes, dict[str, str]]:
    body = TYPEFORM.body.replace(
        TYPEFORM.expected["response_id"].encode(), f"fault-{number}".encode()
    )
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "Typeform-Signature": "sha256=" + base64.b64encode(digest).decode(),
    }
    return body, headers


def assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    problem = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    return problem


async def _send(coroutine: Any) -> httpx.Response:
    response: httpx.Response = await asyncio.wait_for(coroutine, REQUEST_TIMEOUT)
    return response


class TestDatabaseDown:
    async def test_requests_get_503(
        self, fault_app: FastAPI, controlled_postgres: ControlledPostgres
    ) -> None:
        _, key = await make_tenant(fault_app)
        async with client_with_key(fault_app, key) as api:
            endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
            body, headers = _signed(1)

            controlled_postgres.stop()
            read = await _send(api.get("/v1/accounts"))
            written = await _send(api.put("/v1/accounts/DOWN-1", json={"name": "Down"}))
            delivered = await _send(post_delivery(api, endpoint["id"], body, headers))
            controlled_postgres.start()
            stored = await _send(api.get("/v1/accounts/DOWN-1"))

        for response in (read, written, delivered):
            problem = assert_unavailable(response)
            assert problem["type"] == "urn:revcov:problem:service-unavailable"
            assert "retry" in problem["detail"]
        assert_problem(stored, 404)

    async def test_readyz_false_healthz_true(
        self, fault_app: FastAPI, controlled_postgres: ControlledPostgres
    ) -> None:
        transport = httpx.ASGITransport(app=fault_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            before = await _send(client.get("/readyz"))
            controlled_postgres.stop()
            ready = await _send(client.get("/readyz"))
            ready_head = await _send(client.head("/readyz"))
            alive = await _send(client.get("/healthz"))
            controlled_postgres.start()

        assert before.status_code == 200, before.text
        assert ready.status_code == 503, ready.text
        assert ready.json()["ready"] is False
        assert ready.json()["database"] == "unreachable"
        assert int(ready.headers["retry-after"]) > 0
        assert ready_head.status_code == 503
        assert int(ready_head.headers["retry-after"]) > 0
        assert alive.status_code == 200

    async def test_recovers_without_restart(
        self, fault_app: FastAPI, controlled_postgres: ControlledPostgres
    ) -> None:
        # Every pooled connection is open before the stop, so each is dead afterwards.
        # The pool must detect that by itself (pre-ping) instead of failing requests.
        _, key = await make_tenant(fault_app)
        async with client_with_key(fault_app, key) as api:
            await asyncio.gather(*(api.get("/v1/accounts") for _ in range(10)))
            controlled_postgres.stop()
            down = await _send(api.get("/v1/accounts"))
            controlled_postgres.start()

            # pg_ctl -w returns once the server accepts connections, so the very first
            # request afterwards must succeed, well within 5 seconds of the restart.
            first = await _send(api.put("/v1/accounts/UP-1", json={"name": "Up"}))
            after = await asyncio.gather(*(api.get("/v1/accounts") for _ in range(10)))
            ready = await _send(api.get("/readyz"))

        assert_unavailable(down)
        assert first.status_code == 201, first.text
        assert [response.status_code for response in after] == [200] * 10
        assert ready.status_code == 200, ready.text

    async def test_connection_lost_mid_request(
        self, fault_app: FastAPI, controlled_postgres: ControlledPostgres
    ) -> None:
        # A write waits on a lock held elsewhere; its connection is then terminated, as
        # in a failover. The write must fail with 503 and leave nothing behind.
        tenant_id, key = await make_tenant(fault_app)
        admin = await asyncpg.connect(controlled_postgres.dsn())
        try:
            transaction = admin.transaction()
            await transaction.start()
            await admin.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
            async with client_with_key(fault_app, key) as api:
                pending = asyncio.create_task(
                    _send(api.patch("/v1/tenant", json={"timezone": "Europe/Berlin"}))
                )
                await _wait_for_lock_waiter(admin)
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'revcov' AND wait_event_type = 'Lock'"
                )
                cut = await pending
                await transaction.rollback()
                tenant = await _send(api.get("/v1/tenant"))
        finally:
            await admin.close()

        assert_unavailable(cut)
        assert tenant.json()["timezone"] == "UTC"


class TestDatabaseShuttingDown:
    async def test_new_connection_rejected_gets_503(
        self, controlled_postgres: ControlledPostgres, settings: Settings
    ) -> None:
        # A smart shutdown waits for the open session below, and meanwhile rejects new
        # connections with SQLSTATE 57P03, which asyncpg reports as a plain DBAPIError.
        session = await asyncpg.connect(controlled_postgres.dsn())
        controlled_postgres.begin_smart_stop()
        application = create_app(settings, database_url=controlled_postgres.url())
        try:
            async with application.router.lifespan_context(application):
                transport = httpx.ASGITransport(app=application)
                async with httpx.AsyncClient(
                    transport=transport,
                    base_url="http://testserver",
                    headers={"Authorization": "Bearer rcv_x"},
                ) as client:
                    read = await _send(client.get("/v1/accounts"))
                    ready = await _send(client.get("/readyz"))
        finally:
            await session.close()
            await asyncio.to_thread(controlled_postgres.wait_stopped)
            controlled_postgres.start()

        problem = assert_unavailable(read)
        assert problem["type"] == "urn:revcov:problem:service-unavailable"
        assert ready.status_code == 503, ready.text


async def _wait_for_lock_waiter(admin: asyncpg.Connection) -> None:
    for _ in range(600):
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'revcov' AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the request never waited on the lock")


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte, like a
    database host behind a broken network."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


class TestDatabaseNotResponding:
    async def test_connect_timeout_gives_503(self, silent_listener: int) -> None:
        settings = Settings(
            environment="test",
            log_format="console",
            log_level="warning",
            db_connect_timeout_seconds=1,
        )
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{silent_listener}/revcov"
        application = create_app(settings, database_url=url)

        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://testserver",
                headers={"Authorization": "Bearer rcv_x"},
            ) as client:
                read = await _send(client.get("/v1/accounts"))
                ready = await _send(client.get("/readyz"))

        assert_unavailable(read)
        assert read.headers["content-type"] == PROBLEM_JSON
        assert ready.status_code == 503, ready.text
        assert ready.json()["ready"] is False


RESPONSE = {
    "source": "native",
    "response_id": "timed-out",
    "score": 3,
    "submitted_at": "2026-02-01T12:00:00Z",
}


async def test_statement_timeout_gets_503(database_url: str, settings: Settings) -> None:
    """A statement cancelled by `statement_timeout` while it waits for a lock gets 503."""
    timed = settings.model_copy(update={"db_statement_timeout_ms": 300})
    application = create_app(timed, database_url=database_url)
    async with application.router.lifespan_context(application):
        tenant_id, key = await make_tenant(application)
        admin = await asyncpg.connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            # The lock that account changes hold while responses wait to be matched.
            await admin.execute(
                "SELECT pg_advisory_lock($1, hashtext($2))", RESOLUTION_LOCK_CLASS, str(tenant_id)
            )
            async with client_with_key(application, key) as api:
                with capture_logs() as logs:
                    response = await api.post("/v1/responses", json={"responses": [RESPONSE]})
                await admin.execute("SELECT pg_advisory_unlock_all()")
                listed = await api.get("/v1/responses")
        finally:
            await admin.close()

    problem = assert_problem(response, 503)
    assert problem["type"] == "urn:revcov:problem:database-timeout"
    assert response.headers["retry-after"] == "5"
    assert listed.json()["items"] == []
    timeouts = [entry for entry in logs if entry["event"] == "database.timeout"]
    assert [(entry["error"], entry["sqlstate"]) for entry in timeouts] == [
        ("QueryCanceledError", "57014")
    ]


async def test_read_only_database_gets_503(database_url: str, settings: Settings) -> None:
    """A standby, or a user whose transactions are read-only, gets 503 and is not ready."""
    admin = await asyncpg.connect(
        make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    database = make_url(database_url).database
    application = create_app(settings, database_url=database_url)
    try:
        async with application.router.lifespan_context(application):
            _, key = await make_tenant(application)
            await admin.execute(
                f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'
            )
            # New connections read the setting, so the pool drops the ones it holds.
            await application.state.engine.dispose()
            async with client_with_key(application, key) as api:
                response = await api.post("/v1/responses", json={"responses": [RESPONSE]})
                ready = await api.get("/readyz")
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        await admin.close()

    assert_unavailable(response)
    assert ready.status_code == 503, ready.text
    assert ready.json()["database"] == "read_only"
    assert ready.json()["ready"] is False
