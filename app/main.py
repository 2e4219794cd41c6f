"""The FastAPI application: routers, error handlers, middleware and the database lifecycle."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.account_lists.router import router as account_lists_router
from app.accounts.router import router as accounts_router
from app.contacts.router import router as contacts_router
from app.db.session import create_engine, create_sessionmaker, session_scope
from app.errors import PROBLEM_RESPONSES, register_error_handlers
from app.flow.router import router as flow_router
from app.fx.router import router as fx_router
from app.health import router as health_router
from app.logging import RequestIdMiddleware
from app.privacy.router import router as privacy_router
from app.ratelimit import RateLimitMiddleware
from app.reports.router import router as reports_router
from app.responses.router import router as responses_router
from app.routing import MAX_BODY_SCOPE_KEY, RejectNulMiddleware
from app.settings import Settings, get_settings
from app.tenancy import service as tenant_service
from app.tenancy.router import api_keys_router
from app.tenancy.router import router as tenancy_router
from app.webhooks.router import router as webhooks_router
from app.webhooks.tasks import (
    FetchContext,
    create_fetch_client,
    start_fetch_loop,
    stop_fetch_loop,
)

log = structlog.get_logger()

DESCRIPTION = """\
What share of your revenue gave NPS feedback, and how much of it is at risk.

Send API requests with `Authorization: Bearer <api key>`. Errors are RFC 9457 problem
documents (`application/problem+json`). Money is an exact decimal string.
"""


class BodyLimitMiddleware:
    """Record the body size cap in the scope, where `ServiceRequest` reads it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[MAX_BODY_SCOPE_KEY] = self.max_body_bytes
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> FastAPI:
    """Build the app; `database_url` overrides the settings (the embedded server's URL)."""
    settings = settings or get_settings()
    if database_url is None:
        if settings.database_url is None:
            raise ValueError("create_app needs REVCOV_DATABASE_URL or a database_url argument")
        database_url = settings.database_url.get_secret_value()
    mode = "external" if settings.database_url is not None else "embedded"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url, settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        if settings.bootstrap_api_key is not None:
            async with session_scope(app.state.sessionmaker) as session:
                await tenant_service.create_bootstrap_tenant(
                    session, settings.bootstrap_api_key.get_secret_value()
                )
        fetch_client = create_fetch_client()
        app.state.fetch_context = FetchContext(
            sessionmaker=app.state.sessionmaker, client=fetch_client, settings=settings
        )
        app.state.fetch_task = start_fetch_loop(app.state.fetch_context)
        log.info(
            "service.started",
            version=__version__,
            environment=settings.environment,
            database=mode,
        )
        try:
            yield
        finally:
            await stop_fetch_loop(app.state.fetch_task)
            await fetch_client.aclose()
            await engine.dispose()
            log.info("service.stopped")

    app = FastAPI(
        title="revcov",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    register_error_handlers(app)
    app.include_router(health_router)
    for router in (
        tenancy_router,
        api_keys_router,
        accounts_router,
        contacts_router,
        responses_router,
        privacy_router,
        webhooks_router,
        reports_router,
        account_lists_router,
        flow_router,
        fx_router,
    ):
        app.include_router(router, responses=PROBLEM_RESPONSES)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
