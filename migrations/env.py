"""Alembic environment: async engine, URL from the service settings or the caller."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.session import driver_connect_args
from app.models import Base
from app.settings import get_settings

config = context.config
target_metadata = Base.metadata

# Key of the transaction-level advisory lock that serialises concurrent upgrades, for
# example of several `revcov serve` processes starting at once. Any constant works as long
# as nothing else in the database locks the same key.
MIGRATION_LOCK_KEY = 0x72657663_6F76  # "revcov" in ASCII


def _database_url() -> str:
    # `app.db.migrations` passes the URL in the config; the plain `alembic` command uses settings.
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    configured = get_settings().database_url
    if configured is None:
        raise SystemExit(
            "REVCOV_DATABASE_URL is not set; run `revcov migrate` to migrate the embedded database"
        )
    return configured.get_secret_value()


def _run_migrations(connection: Connection) -> None:
    # The lock opens the transaction that all pending migrations then share, so Alembic
    # reads the current revision only once it holds the lock, and a process that waited
    # finds the schema already migrated. A transaction-level lock also works behind
    # PgBouncer in transaction pooling mode, where a session-level lock would stay on a
    # pooled server connection.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_database_url(), connect_args=driver_connect_args(get_settings()))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
