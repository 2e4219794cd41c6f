"""The report session raises `work_mem`, turns JIT off and reads one snapshot, for its own
transaction only."""

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from starlette.requests import Request

from app.db.session import get_report_session, session_scope


async def _work_mem_kb(session: AsyncSession) -> int:
    kb: int = await session.scalar(
        text("SELECT setting::int FROM pg_settings WHERE name = 'work_mem'")
    )
    return kb


async def test_report_session_sets_work_mem(app: FastAPI) -> None:
    # One connection, so the settings before and after are read where the report ran.
    engine = create_async_engine(app.state.engine.url, pool_size=1, max_overflow=0)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        await _check_report_settings(app, sessionmaker)
    finally:
        await engine.dispose()


async def _check_report_settings(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_scope(sessionmaker) as session:
        default_kb = await _work_mem_kb(session)
        default_jit = await session.scalar(text("SELECT current_setting('jit')"))
    report_kb = default_kb * 2 + 64
    settings = app.state.settings.model_copy(update={"report_work_mem_kb": report_kb})
    # A stand-in for the application, so the shared app keeps its own settings.
    service = SimpleNamespace(state=SimpleNamespace(settings=settings, report_sessionmaker=None))

    request = Request({"type": "http", "app": service, "headers": []})
    async with session_scope(sessionmaker) as session:
        reports = get_report_session(request, session)
        report_session = await anext(reports)
        assert await _work_mem_kb(report_session) == report_kb
        assert await report_session.scalar(text("SELECT current_setting('jit')")) == "off"
        isolation = text("SELECT current_setting('transaction_isolation')")
        assert await report_session.scalar(isolation) == "repeatable read"
        read_only = text("SELECT current_setting('transaction_read_only')")
        assert await report_session.scalar(read_only) == "on"
        # The dependency's remaining code only ends the report session.
        with pytest.raises(StopAsyncIteration):
            await anext(reports)

    async with session_scope(sessionmaker) as session:
        assert await _work_mem_kb(session) == default_kb
        assert await session.scalar(text("SELECT current_setting('jit')")) == default_jit
