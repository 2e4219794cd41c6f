"""The Alembic migrations: a full round trip, and the schema rules they must keep."""

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from app.db.migrations import alembic_config, head_revision
from tests.conftest import admin_dsn, run_admin_statement


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards."""
    name = f"revcov_migrations_{uuid.uuid4().hex[:10]}"
    admin = admin_dsn(database_url)
    asyncio.run(run_admin_statement(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run_admin_statement(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


TABLES_QUERY = """
    SELECT table_name FROM information_schema.tables
    WHERE table_schema = 'public' AND table_name <> 'alembic_version'
    ORDER BY table_name
"""


def test_upgrade_downgrade_round_trip(scratch_database: str) -> None:
    config = alembic_config(scratch_database)

    command.upgrade(config, "head")
    upgraded = asyncio.run(_fetch(scratch_database, TABLES_QUERY))
    command.downgrade(config, "base")
    downgraded = asyncio.run(_fetch(scratch_database, TABLES_QUERY))
    command.upgrade(config, "head")
    version = asyncio.run(_fetch(scratch_database, "SELECT version_num FROM alembic_version"))

    assert len(upgraded) >= 6
    assert downgraded == []
    assert version[0]["version_num"] == head_revision()


KEYS_QUERY = """
    SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype,
           (SELECT a.attname FROM pg_attribute a
             WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]) AS first_column
    FROM pg_constraint c
    JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f')
      AND c.conrelid::regclass::text NOT IN ('alembic_version', 'tenants')
"""


def test_tenant_id_leads_every_key(database_url: str) -> None:
    keys = asyncio.run(_fetch(database_url, KEYS_QUERY))

    offenders = [
        f"{key['table_name']}.{key['conname']}"
        for key in keys
        if key["first_column"] != "tenant_id"
    ]

    assert keys
    assert offenders == []


def test_money_columns_are_numeric(database_url: str) -> None:
    columns = asyncio.run(
        _fetch(
            database_url,
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public' AND column_name IN ('amount', 'coverage_target')
            """,
        )
    )

    assert columns
    assert {column["data_type"] for column in columns} == {"numeric"}


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def test_existing_api_keys_get_every_scope(scratch_database: str) -> None:
    config = alembic_config(scratch_database)
    command.upgrade(config, "b7e41d9c0a63")
    tenant_id = uuid.uuid4()
    asyncio.run(
        _execute(
            scratch_database,
            f"INSERT INTO tenants (id, name) VALUES ('{tenant_id}', 'before-scopes')",
            "INSERT INTO api_keys (tenant_id, id, key_hash, prefix, name) "
            f"VALUES ('{tenant_id}', '{uuid.uuid4()}', '\\x00'::bytea, 'rcv_x', 'old')",
        )
    )

    command.upgrade(config, "head")
    rows = asyncio.run(_fetch(scratch_database, "SELECT scopes FROM api_keys"))

    assert [row["scopes"] for row in rows] == [["ingest", "read", "admin"]]
