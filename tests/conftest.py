"""Test fixtures: a real PostgreSQL migrated by Alembic, the app over ASGI, a tenant per test.

PostgreSQL is an embedded server in a temporary directory unless REVCOV_TEST_DATABASE_URL
names another server; there the tests create a database of their own and drop it at the end.
Every test gets a fresh tenant, so tests share the database without seeing each other's rows.
"""

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.db.embedded import start_embedded_postgres
from app.db.migrations import upgrade_to_head
from app.db.session import session_scope
from app.main import create_app
from app.settings import Settings
from app.tenancy import service as tenant_service
from tests.thin_payloads import ReplayServer, fresh_moment, replay_server


def admin_dsn(url: str) -> str:
    """A plain asyncpg DSN for the `postgres` maintenance database of the server at `url`."""
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


def plain_dsn(url: str) -> str:
    """The asyncpg DSN of the database that the SQLAlchemy `url` names."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def run_admin_statement(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("REVCOV_TEST_DATABASE_URL")
    embedded = None
    data_dir: Path | None = None
    if external:
        server_url = Settings(database_url=external).database_url
        assert server_url is not None
        base_url = server_url.get_secret_value()
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="revcov-test-"))
        embedded = start_embedded_postgres(data_dir, delete_on_stop=True)
        base_url = embedded.url()

    name = f"revcov_test_{uuid.uuid4().hex[:12]}"
    admin = admin_dsn(base_url)
    asyncio.run(run_admin_statement(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(run_admin_statement(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if embedded is not None:
            embedded.stop()
        if data_dir is not None:
            # delete_on_stop removes only data_dir/pgdata.
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards."""
    name = f"revcov_scratch_{uuid.uuid4().hex[:10]}"
    admin = admin_dsn(database_url)
    asyncio.run(run_admin_statement(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run_admin_statement(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def migrated_database(scratch_database: str) -> str:
    """A database of its own, migrated and empty, as a new installation's is."""
    upgrade_to_head(scratch_database)
    return scratch_database


@pytest.fixture(scope="session")
def settings() -> Settings:
    # Thin-payload tests replay platform APIs from a server on 127.0.0.1.
    return Settings(
        environment="test",
        log_format="console",
        log_level="warning",
        webhook_fetch_allow_private_hosts=True,
        # The periodic ANALYZE logs lines of no request, which would land in tests that read
        # the log. tests/test_table_statistics.py runs it on a database of its own.
        statistics_check_interval_seconds=0,
    )


@pytest.fixture(scope="session")
async def app(database_url: str, settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def own_app(migrated_database: str, settings: Settings) -> AsyncIterator[FastAPI]:
    """The app on `migrated_database`, running until the test ends."""
    application = create_app(settings, database_url=migrated_database)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def set_clock(app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    """Set the time the service gives to arriving webhook deliveries; restored afterwards."""
    previous = getattr(app.state, "clock", None)

    def freeze(moment: datetime) -> None:
        app.state.clock = lambda: moment

    yield freeze
    if previous is None:
        del app.state.clock
    else:
        app.state.clock = previous


async def make_tenant(app: FastAPI, name: str = "test") -> tuple[uuid.UUID, str]:
    async with session_scope(app.state.sessionmaker) as session:
        tenant, key = await tenant_service.create_tenant(session, name)
    return tenant.id, key


@pytest.fixture
async def api_key(app: FastAPI) -> str:
    _, key = await make_tenant(app)
    return key


@pytest.fixture
async def api(app: FastAPI, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as a fresh tenant of its own."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as client:
        yield client


@pytest.fixture
async def other_api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as a second tenant, for checks that tenants see only their own."""
    _, key = await make_tenant(app, "other")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    """A server on 127.0.0.1 that replays recorded platform API responses."""
    with replay_server() as running:
        yield running


@pytest.fixture
def moment(set_clock: Callable[[datetime], None]) -> datetime:
    """The time deliveries arrive at and fetch passes run at, for this test alone."""
    now = fresh_moment()
    set_clock(now)
    return now
