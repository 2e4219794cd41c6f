"""The Alembic migrations: a full round trip, and the schema rules they must keep."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from alembic import command

from app.db.migrations import alembic_config, head_revision, known_revisions
from app.main import create_app
from app.settings import Settings
from tests.conftest import plain_dsn


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(plain_dsn(url))
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


def test_state_refresh_runs_without_jit(database_url: str) -> None:
    # A refresh's generic plans carry the cost of a whole-tenant rebuild, which made
    # PostgreSQL compile every statement of a one-response refresh with JIT.
    rows = asyncio.run(
        _fetch(
            database_url,
            "SELECT proconfig FROM pg_proc WHERE proname = 'revcov_refresh_scores'",
        )
    )

    assert len(rows) == 1
    assert "jit=off" in rows[0]["proconfig"]
    assert "plan_cache_mode=force_generic_plan" in rows[0]["proconfig"]


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
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


BEFORE_PARTITIONING = "9d3f1b6a2c48"
PARTITIONING = "3f1d9a6c2b84"


def test_partitioning_keeps_deliveries_and_keys(scratch_database: str) -> None:
    config = alembic_config(scratch_database)
    command.upgrade(config, BEFORE_PARTITIONING)
    tenant_id = uuid.uuid4()
    asyncio.run(
        _execute(
            scratch_database,
            f"INSERT INTO tenants (id, name) VALUES ('{tenant_id}', 'partitioned')",
            "INSERT INTO webhook_endpoints (tenant_id, id, source, account_field) "
            f"VALUES ('{tenant_id}', 'wh_1', 'typeform', 'account_id')",
            "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, delivery_key, source, "
            "status, headers, body, received_at) "
            f"VALUES ('{tenant_id}', 'wh_1', 'key-old', 'typeform', 'processed', '{{}}', "
            "'\\x7b7d', '2024-05-17T10:00:00Z'), "
            f"('{tenant_id}', 'wh_1', 'key-new', 'typeform', 'processed', '{{}}', "
            "'\\x7b7d', now())",
        )
    )
    rows_query = (
        "SELECT tableoid::regclass::text AS stored_in, id, delivery_key "
        "FROM webhook_deliveries ORDER BY id"
    )

    command.upgrade(config, PARTITIONING)
    partitioned = asyncio.run(_fetch(scratch_database, rows_query))
    keys = asyncio.run(
        _fetch(scratch_database, "SELECT delivery_key FROM webhook_delivery_keys ORDER BY 1")
    )
    asyncio.run(
        _execute(
            scratch_database,
            "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, delivery_key, source, "
            f"status, headers, body) VALUES ('{tenant_id}', 'wh_1', 'key-third', 'typeform', "
            "'processed', '{}', '\\x7b7d')",
        )
    )
    command.downgrade(config, BEFORE_PARTITIONING)
    restored = asyncio.run(_fetch(scratch_database, rows_query))

    assert [row["stored_in"] for row in partitioned] == [
        "webhook_deliveries_p2024_05",
        f"webhook_deliveries_p{datetime.now(UTC):%Y_%m}",
    ]
    assert [row["id"] for row in partitioned] == [1, 2]
    assert [row["delivery_key"] for row in keys] == ["key-new", "key-old"]
    assert [(row["id"], row["delivery_key"]) for row in restored] == [
        (1, "key-old"),
        (2, "key-new"),
        (3, "key-third"),
    ]
    assert {row["stored_in"] for row in restored} == {"webhook_deliveries"}


async def _readiness(url: str, version: str) -> tuple[int, bool]:
    """Set the schema's recorded revision, then return `/readyz`'s status and `ready`."""
    await _execute(url, f"UPDATE alembic_version SET version_num = '{version}'")
    status, body = await _readiness_body(url)
    return status, bool(body["ready"])


async def _readiness_body(url: str) -> tuple[int, dict[str, object]]:
    application = create_app(Settings(environment="test"), database_url=url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/readyz")
    return response.status_code, response.json()


def test_readiness_before_migrating(scratch_database: str) -> None:
    status, body = asyncio.run(_readiness_body(scratch_database))

    assert status == 503
    assert body["database"] == "ok"
    assert body["schema_revision"] is None
    assert body["ready"] is False


def test_readiness_by_schema_revision(scratch_database: str) -> None:
    command.upgrade(alembic_config(scratch_database), "head")
    head = head_revision()
    assert head is not None
    older = next(revision for revision in known_revisions() if revision != head)

    current = asyncio.run(_readiness(scratch_database, head))
    behind = asyncio.run(_readiness(scratch_database, older))
    # A revision of a newer release, migrated before its replicas start.
    newer = asyncio.run(_readiness(scratch_database, "0123456789ab"))
    # Not the form of an Alembic revision id: not revcov's schema.
    foreign = asyncio.run(_readiness(scratch_database, "garbage"))
    empty = asyncio.run(_readiness(scratch_database, ""))

    assert current == (200, True)
    assert behind == (503, False)
    assert newer == (200, True)
    assert foreign == (503, False)
    assert empty == (503, False)


NULLABLE_VERSION = [
    "ALTER TABLE alembic_version DROP CONSTRAINT alembic_version_pkc",
    "ALTER TABLE alembic_version ALTER COLUMN version_num DROP NOT NULL",
]


@pytest.mark.parametrize(
    ("statements", "ready"),
    [
        ([*NULLABLE_VERSION, "INSERT INTO alembic_version VALUES (NULL)"], True),
        (["ALTER TABLE alembic_version RENAME COLUMN version_num TO version"], False),
        (
            [
                *NULLABLE_VERSION,
                "ALTER TABLE alembic_version ALTER COLUMN version_num TYPE bigint USING 1",
            ],
            False,
        ),
    ],
    ids=["extra null row", "renamed column", "integer column"],
)
def test_readiness_with_odd_version_table(
    scratch_database: str, statements: list[str], ready: bool
) -> None:
    command.upgrade(alembic_config(scratch_database), "head")
    asyncio.run(_execute(scratch_database, *statements))

    status, body = asyncio.run(_readiness_body(scratch_database))

    assert body["database"] == "ok"
    assert body["ready"] is ready
    assert status == (200 if ready else 503)


def test_readiness_with_two_version_rows(scratch_database: str) -> None:
    command.upgrade(alembic_config(scratch_database), "head")
    asyncio.run(_execute(scratch_database, "INSERT INTO alembic_version VALUES ('0123456789ab')"))

    status, body = asyncio.run(_readiness_body(scratch_database))

    assert status == 503
    assert body["database"] == "ok"
    assert body["ready"] is False
