"""The Alembic migrations: a full round trip, and the schema rules they must keep."""

import asyncio
import uuid

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

from app.db.migrations import alembic_config, head_revision


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


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
