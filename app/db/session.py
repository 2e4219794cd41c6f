"""Engine and session factory, and the only place in the service that commits.

Request handlers get a session from `get_session`, which commits after the route function
returns and before the response is sent, so a 2xx always means the data is committed.
Command-line code uses `session_scope`, which commits the same way. Services only flush.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import await_only

from app.db.freshness import FRESHNESS_STATE_KEY, measure_freshness
from app.db.statistics import analyze_after_commit
from app.settings import Settings


def _json_default(value: Any) -> Any:
    # Request bodies parse JSON numbers as Decimal; free-form JSON columns store them as
    # JSON numbers again (an integer when the value is whole).
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_serializer(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _unique_statement_name() -> str:
    return f"__revcov_{uuid.uuid4().hex}__"


def driver_connect_args(settings: Settings) -> dict[str, Any]:
    """Return the asyncpg connect arguments for `settings.database_pooler`.

    PgBouncer in transaction pooling mode gives each transaction any server connection,
    and version 1.18 (Debian 12) does not track prepared statements. So behind it no
    statement is cached beyond its transaction, each one gets a name no other client
    uses, and only the startup parameters PgBouncer forwards are sent.
    """
    server_settings = {"application_name": "revcov", "timezone": "UTC"}
    # Without a limit, a database host that does not respond would hold each request until
    # the operating system gives up on the connection.
    timeout = settings.db_connect_timeout_seconds
    if settings.database_pooler == "pgbouncer":
        return {
            "timeout": timeout,
            "server_settings": server_settings,
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    return {"timeout": timeout, "server_settings": server_settings}


# A connection returned to the pool less than this many seconds ago is used without a
# ping, as HikariCP does by default (`com.zaxxer.hikari.aliveBypassWindowMs`, 500 ms, in
# HikariPool.java). Under load every
# checkout falls in the window. A connection that broke within it fails its request with
# a 503, and the pool then replaces it.
PING_BYPASS_SECONDS = 0.5
_CHECKED_IN_AT = "revcov_checked_in_at"


def _record_checkin(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    connection_record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_on_checkout(
    dbapi_connection: Any, connection_record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """Check a pooled connection that was idle for a while before it is used, in one round trip.

    SQLAlchemy's `pool_pre_ping` for asyncpg (2.0) sends BEGIN, an empty query and
    ROLLBACK on every checkout, so that it works behind PgBouncer. Without PgBouncer one
    simple query is enough (asyncpg 0.32 fails on the empty query `;` in the simple query
    protocol). A `DisconnectionError` makes the pool replace the connection and try
    again, as after a failed pre-ping.
    """
    checked_in_at = connection_record.info.get(_CHECKED_IN_AT)
    if checked_in_at is not None and time.monotonic() - checked_in_at < PING_BYPASS_SECONDS:
        return
    try:
        await_only(dbapi_connection.driver_connection.execute("SELECT 1"))
    except Exception as error:
        raise DisconnectionError(f"the pooled connection is broken: {error}") from error


def create_engine(database_url: str, settings: Settings) -> AsyncEngine:
    behind_pgbouncer = settings.database_pooler == "pgbouncer"
    engine = create_async_engine(
        database_url,
        json_serializer=_json_serializer,
        # Keep request values (emails, comments, secrets) out of error messages and logs.
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=behind_pgbouncer,
        connect_args=driver_connect_args(settings),
    )
    if not behind_pgbouncer:
        event.listen(engine.sync_engine.pool, "checkout", _ping_on_checkout)
        event.listen(engine.sync_engine.pool, "checkin", _record_checkin)
    if behind_pgbouncer:
        # PgBouncer rejects `statement_timeout` as a startup parameter, and a session-level
        # SET would stay on a server connection that other clients share.
        timeout_statement = f"SET LOCAL statement_timeout = {settings.db_statement_timeout_ms:d}"

        @event.listens_for(engine.sync_engine, "begin")
        def set_statement_timeout(connection: Connection) -> None:
            connection.exec_driver_sql(timeout_statement)

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session; commit when the block succeeds, roll back when it raises.

    After the commit, tables the transaction grew by much get fresh statistics
    (`app.db.statistics`).
    """
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
            await analyze_after_commit(session)
        except BaseException:
            await session.rollback()
            raise


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with session_scope(sessionmaker) as session:
        yield session


async def get_report_session(
    request: Request, session: Annotated[AsyncSession, Depends(get_session, scope="function")]
) -> AsyncIterator[AsyncSession]:
    """Yield a session for reports in a read-only REPEATABLE READ transaction: on the read
    replica (REVCOV_READ_DATABASE_URL) when there is one, else the request's session on the
    primary, and record how fresh its data is for the `Data-As-Of` header.

    One snapshot for the whole transaction keeps a report's statements consistent. A
    report checks that the tenant's quarter grid fits its period before it reads the
    quarter state. Without one snapshot, a time-zone change committed between the two
    would pair the check with a state rebuilt for another grid. On the primary, the
    request's transaction, in which authentication only read, is committed first, so
    that the report's transaction starts with its own snapshot on one connection.
    Reports only read, and every other route stays on the primary, so a write is visible
    to the writer's next request except in reports on a replica, which may lag.
    """
    replica: async_sessionmaker[AsyncSession] | None = request.app.state.report_sessionmaker
    settings: Settings = request.app.state.settings
    if replica is None:
        await session.commit()
        await _begin_report_transaction(session, settings)
        setattr(request.state, FRESHNESS_STATE_KEY, await measure_freshness(session))
        yield session
        return
    async with session_scope(replica) as report_session:
        await _begin_report_transaction(report_session, settings)
        setattr(request.state, FRESHNESS_STATE_KEY, await measure_freshness(report_session))
        yield report_session


async def _begin_report_transaction(session: AsyncSession, settings: Settings) -> None:
    await session.connection(
        execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    )
    await _tune_report_transaction(session, settings)


async def _tune_report_transaction(session: AsyncSession, settings: Settings) -> None:
    """Raise `work_mem` to `report_work_mem_kb` and turn JIT compilation off until the
    transaction ends.

    A report statement is planned for every account, so its estimated cost passes the JIT
    thresholds, and compiling it took longer than the time it saved: with JIT on, the
    survey-next statement took 3.5 s instead of 1.2 s at 100,000 accounts (PostgreSQL 15).
    `SET LOCAL` ends with the transaction, so neither setting stays on a pooled
    connection, also behind PgBouncer in transaction pooling mode.
    """
    await session.execute(
        text("SELECT set_config('work_mem', :value, true), set_config('jit', 'off', true)"),
        {"value": f"{settings.report_work_mem_kb}kB"},
    )


# `scope="function"` ends the dependency, and so commits, before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReportSessionDep = Annotated[AsyncSession, Depends(get_report_session, scope="function")]
