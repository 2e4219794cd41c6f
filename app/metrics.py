"""Prometheus metrics: HTTP requests, webhook deliveries, background fetches and the
database connection pool.

Each app has a registry of its own, so two apps in one process (tests) count separately.
Labels carry only values from small fixed sets: route templates such as
`/v1/accounts/{external_id}` (never the raw path), status codes, webhook sources and
outcomes. Tenant ids, endpoint ids, emails and secrets never appear in a label.
"""

import hmac
import time
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import UnauthorizedError, problem_content
from app.routing import route_template

# Outcomes of a webhook delivery as the platform sent it. `accepted`: the response was
# stored and matched to an account. `unmatched`: stored, but it counts for no account yet.
# `pending`: a thin payload whose response the fetcher gets later. `ignored`: an event
# that carries no response. `failed`: verified and kept, but it could not be mapped.
# `duplicate`: a repeat of a stored delivery. `rejected`: the signature or token was wrong.
DeliveryOutcome = Literal[
    "accepted", "unmatched", "pending", "ignored", "failed", "duplicate", "rejected"
]
# Outcomes of one background fetch attempt; `retry` means another attempt is scheduled.
FetchOutcomeLabel = Literal["processed", "ignored", "retry", "failed"]

# Latency buckets in seconds, from a cached read to a 10,000-row batch.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PoolCollector(Collector):
    """Report the SQLAlchemy connection pool's size and use at each scrape."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        pool = self.engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return
        size = GaugeMetricFamily(
            "revcov_db_pool_size", "Connections the pool keeps open (REVCOV_DB_POOL_SIZE)."
        )
        size.add_metric([], pool.size())
        checked_out = GaugeMetricFamily(
            "revcov_db_pool_checked_out", "Connections in use by requests or the fetcher."
        )
        checked_out.add_metric([], pool.checkedout())
        idle = GaugeMetricFamily("revcov_db_pool_idle", "Open connections waiting in the pool.")
        idle.add_metric([], pool.checkedin())
        overflow = GaugeMetricFamily(
            "revcov_db_pool_overflow",
            "Connections open beyond the pool size (at most REVCOV_DB_MAX_OVERFLOW); "
            "negative while the pool has not opened all of its connections yet.",
        )
        overflow.add_metric([], pool.overflow())
        yield from (size, checked_out, idle, overflow)


class ServiceMetrics:
    """The metrics of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The client's standard process_* (CPU, memory, open files), python_gc_* and
        # python_info metrics, as its default registry has them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)
        self.requests = Counter(
            "revcov_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "revcov_http_request_duration_seconds",
            "Time from receiving an HTTP request to sending its response, in seconds.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests_in_progress = Gauge(
            "revcov_http_requests_in_progress",
            "HTTP requests received whose response has not been sent yet.",
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "revcov_webhook_deliveries",
            "Webhook deliveries by source platform and outcome, counted once committed.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.webhook_fetches = Counter(
            "revcov_webhook_fetches",
            "Background fetch attempts for thin webhook payloads by source and outcome.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.webhook_fetch_retries = Counter(
            "revcov_webhook_fetch_retries",
            "Background fetch attempts that failed and were scheduled again, by source.",
            ["source"],
            registry=self.registry,
        )
        self._pool_collector: PoolCollector | None = None
        # The labelled children by label values, because `labels()` took about 8 µs per
        # call on the 2-core benchmark machine, far more than a dictionary lookup. The
        # metrics keep every child they create, so these dictionaries add no label set.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._delivery_children: dict[tuple[str, str], Counter] = {}

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            labels = {"method": method, "route": route, "status": str(status)}
            children = (self.requests.labels(**labels), self.request_duration.labels(**labels))
            self._request_children[key] = children
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def record_delivery(self, source: str, outcome: DeliveryOutcome) -> None:
        key = (source, outcome)
        child = self._delivery_children.get(key)
        if child is None:
            child = self.webhook_deliveries.labels(source=source, outcome=outcome)
            self._delivery_children[key] = child
        child.inc()

    def record_fetch(self, source: str, outcome: FetchOutcomeLabel) -> None:
        self.webhook_fetches.labels(source=source, outcome=outcome).inc()
        if outcome == "retry":
            self.webhook_fetch_retries.labels(source=source).inc()

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Report `engine`'s connection pool from now on, in place of any earlier engine's."""
        self.unwatch_pool()
        self._pool_collector = PoolCollector(engine)
        self.registry.register(self._pool_collector)

    def unwatch_pool(self) -> None:
        if self._pool_collector is not None:
            self.registry.unregister(self._pool_collector)
            self._pool_collector = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Count each HTTP request and time it until its response is sent."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.requests_in_progress.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.requests_in_progress.dec()
            self.metrics.record_request(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


# Async, because FastAPI runs a plain function dependency in a worker thread.
async def _service_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[ServiceMetrics, Depends(_service_metrics)]


def _require_metrics_token(request: Request) -> None:
    """Check REVCOV_METRICS_TOKEN when it is set. The header is read here rather than through
    a security scheme, so that the schema does not declare a token the route may not need."""
    expected = request.app.state.settings.metrics_token
    if expected is None:
        return
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        sent.strip().encode(), expected.get_secret_value().encode()
    ):
        raise UnauthorizedError(
            "GET /metrics needs `Authorization: Bearer <REVCOV_METRICS_TOKEN>`; "
            "the token is missing or wrong.",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(tags=["operations"])

METRICS_EXAMPLE = """\
# HELP revcov_http_requests_total HTTP requests by method, route template and status code.
# TYPE revcov_http_requests_total counter
revcov_http_requests_total{method="GET",route="/v1/coverage",status="200"} 42.0
# HELP revcov_webhook_deliveries_total Webhook deliveries by source platform and outcome.
# TYPE revcov_webhook_deliveries_total counter
revcov_webhook_deliveries_total{outcome="accepted",source="typeform"} 17.0
"""


@router.get(
    "/metrics",
    summary="Service metrics in the Prometheus text format",
    description=(
        "Request counts and latencies by route template and status, webhook deliveries by "
        "source and outcome, background fetch attempts and retries, and the database "
        "connection pool. The counts are those of this process since it started. No API "
        "key: when REVCOV_METRICS_TOKEN is set, send it as `Authorization: Bearer <token>`; "
        "otherwise the route is open, so keep it off the public network."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The metrics in the Prometheus text exposition format 0.0.4.",
            "content": {CONTENT_TYPE_PLAIN_0_0_4: {"example": METRICS_EXAMPLE}},
        },
        401: problem_content("REVCOV_METRICS_TOKEN is set, and the token is missing or wrong."),
    },
    dependencies=[Depends(_require_metrics_token)],
)
async def metrics(service_metrics: MetricsDep) -> Response:
    return Response(service_metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
