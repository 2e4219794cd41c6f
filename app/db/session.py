"""Engine and session factory, and the only place in the service that commits.

Request handlers get a session from `get_session`, which commits after the route function
returns and before the response is sent, so a 2xx always means the data is committed.
Command-line code uses `session_scope`, which commits the same way. Services only flush.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.settings import Settings


def _json_default(value: Any) -> Any:
    # Request bodies parse JSON numbers as Decimal; free-form JSON columns store them as
    # JSON numbers again (an integer when the value is whole).
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_serializer(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def create_engine(database_url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        database_url,
        json_serializer=_json_serializer,
        # Keep request values (emails, comments, secrets) out of error messages and logs.
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={
            # Without a limit, a database host that does not respond would hold each
            # request until the operating system gives up on the connection.
            "timeout": settings.db_connect_timeout_seconds,
            "server_settings": {
                "application_name": "revcov",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "timezone": "UTC",
            },
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session; commit when the block succeeds, roll back when it raises."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with session_scope(sessionmaker) as session:
        yield session


# `scope="function"` ends the dependency, and so commits, before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
