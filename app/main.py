"""The FastAPI application: routers, error handlers, middleware and the database lifecycle."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.account_lists.router import router as account_lists_router
from app.accounts.router import router as accounts_router
from app.api_docs import API_TAGS, install_openapi
from app.contacts.router import router as contacts_router
from app.dashboard.router import install_dashboard
from app.db.freshness import FreshnessHeaderMiddleware
from app.db.session import create_engine, create_sessionmaker, session_scope
from app.db.statistics import run_statistics_loop
from app.errors import PROBLEM_RESPONSES, register_error_handlers
from app.flow.router import router as flow_router
from app.fx.router import router as fx_router
from app.health import router as health_router
from app.logging import RequestIdMiddleware
from app.metrics import MetricsMiddleware, ServiceMetrics
from app.metrics import router as metrics_router
from app.privacy.router import router as privacy_router
from app.ratelimit import RateLimitMiddleware
from app.reports.router import router as reports_router
from app.responses.router import router as responses_router
from app.routing import MAX_BODY_SCOPE_KEY, RejectNulMiddleware
from app.settings import Settings, get_settings
from app.tenancy import service as tenant_service
from app.tenancy.router import api_keys_router, share_tokens_router
from app.tenancy.router import router as tenancy_router
from app.webhooks.dependencies import system_clock
from app.webhooks.group_commit import IngestWriter
from app.webhooks.ingest import EndpointCache, WebhookIngestMiddleware
from app.webhooks.partitions import run_maintenance_loop
from app.webhooks.router import receive_webhook_route
from app.webhooks.router import router as webhooks_router
from app.webhooks.tasks import (
    FetchContext,
    create_fetch_client,
    start_fetch_loop,
    stop_fetch_loop,
)
from app.widgets.router import router as widgets_router

log = structlog.get_logger()

# URL path of the Swagger UI and ReDoc scripts, styles and icon.
DOCS_ASSETS_PATH = "/docs-assets"
# The pages of Swagger UI and ReDoc that `FastAPIOffline` adds.
DOCS_PAGES = frozenset({"/docs", "/redoc"})

DESCRIPTION = """\
What share of your revenue gave NPS feedback, and how much of it is at risk.

Send API requests with `Authorization: Bearer <api key>`. Errors are RFC 9457 problem
documents (`application/problem+json`). A query parameter that a route does not accept, or
that it takes once but the request repeats, is an error (422), not ignored. Money is an exact
decimal string.
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


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    read_database_url: str | None = None,
) -> FastAPI:
    """Build the app; `database_url` overrides the settings (the embedded server's URL), and
    `read_database_url` the replica of the report routes."""
    settings = settings or get_settings()
    if database_url is None:
        if settings.database_url is None:
            raise ValueError("create_app needs REVCOV_DATABASE_URL or a database_url argument")
        database_url = settings.database_url.get_secret_value()
    if read_database_url is None and settings.read_database_url is not None:
        read_database_url = settings.read_database_url.get_secret_value()
    mode = "external" if settings.database_url is not None else "embedded"
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url, settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        # Behind PgBouncer in transaction mode, a statement outside a transaction may run
        # on any server connection, so webhooks keep the ORM path there.
        app.state.webhook_endpoint_cache = (
            None if settings.database_pooler == "pgbouncer" else EndpointCache()
        )
        app.state.webhook_ingest_writer = IngestWriter(engine)
        metrics.watch_pool(engine)
        read_engine = None
        app.state.report_sessionmaker = None
        if read_database_url is not None:
            read_engine = create_engine(read_database_url, settings)
            app.state.report_sessionmaker = create_sessionmaker(read_engine)
        if settings.bootstrap_api_key is not None:
            async with session_scope(app.state.sessionmaker) as session:
                await tenant_service.create_bootstrap_tenant(
                    session, settings.bootstrap_api_key.get_secret_value()
                )
        fetch_client = create_fetch_client(
            allow_private_hosts=settings.webhook_fetch_allow_private_hosts
        )
        app.state.fetch_context = FetchContext(
            sessionmaker=app.state.sessionmaker,
            client=fetch_client,
            settings=settings,
            metrics=metrics,
        )
        app.state.fetch_task = start_fetch_loop(app.state.fetch_context)
        maintenance_task = asyncio.create_task(
            run_maintenance_loop(app.state.sessionmaker, settings, system_clock),
            name="webhook-partition-maintenance",
        )
        statistics_task = asyncio.create_task(
            run_statistics_loop(engine, settings.statistics_check_interval_seconds),
            name="table-statistics",
        )
        log.info(
            "service.started",
            version=__version__,
            environment=settings.environment,
            database=mode,
            read_replica=read_database_url is not None,
        )
        try:
            yield
        finally:
            maintenance_task.cancel()
            statistics_task.cancel()
            await asyncio.wait([maintenance_task, statistics_task])
            await stop_fetch_loop(app.state.fetch_task)
            await fetch_client.aclose()
            metrics.unwatch_pool()
            await engine.dispose()
            if read_engine is not None:
                await read_engine.dispose()
            log.info("service.stopped")

    # The docs pages load Swagger UI and ReDoc from the service itself, not from a CDN, so
    # they work on hosts without internet access.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS_PATH,
        title="revcov",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        openapi_tags=API_TAGS,
    )
    # Uptime monitors and link checkers send HEAD, which the doc pages do not take.
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path in DOCS_PAGES and route.methods:
            route.methods.add("HEAD")
    app.state.metrics = metrics
    register_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics_router)
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
        share_tokens_router,
        widgets_router,
    ):
        app.include_router(router, responses=PROBLEM_RESPONSES)
    install_dashboard(app)
    # Added first, so it runs inside every other middleware.
    app.add_middleware(WebhookIngestMiddleware, route=receive_webhook_route())
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(FreshnessHeaderMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_openapi(app)
    return app
