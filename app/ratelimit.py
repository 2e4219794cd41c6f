"""Per-key request rate limits: a token bucket per API key and per webhook endpoint.

Each bucket contains up to `burst` tokens and refills at `rate` tokens per second. A request
takes one token, and a request that finds none gets 429 with `Retry-After`. The limit
applies before the body is read and before any database query, so a flood from one key
costs neither.
"""

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import problem_response
from app.routing import ROUTE_TEMPLATE_KEY, template_for_path
from app.settings import Settings
from app.webhooks.service import loggable_endpoint_id, tenant_id_from_endpoint_id

log = structlog.get_logger()

WEBHOOK_PATH_PREFIX = "/v1/webhooks/"
# Buckets kept per kind. The least recently used bucket is dropped beyond this, so keys
# sent at random cannot grow memory without bound; a dropped key starts again full.
MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class TokenBuckets:
    """Token buckets by key, kept in this process only."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token from `key`'s bucket. Return 0 when one was taken, else the seconds
        until the bucket contains a token again."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated_at=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated_at = now

        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _share_token(scope: Scope) -> str | None:
    """Return the `token` query parameter, the share token of the coverage widget.

    A repeated parameter gives its last value, the one that FastAPI authenticates, so that
    a request cannot pass a fresh bucket's token first.
    """
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get("token")
    return values[-1] if values else None


class RateLimitMiddleware:
    """Reject with 429 a request whose API key, or webhook endpoint, has used up its bucket.

    Webhook deliveries count against their endpoint (the id in the URL), every other
    `/v1` request against its share token (`?token=`, which the widget reads first) or else
    its bearer token. Requests without either, such as the health
    probes, are not limited. A rate of 0 turns a limit off.
    """

    # TODO: buckets live in this process, so N service processes together allow N times
    # each limit. A limit shared between processes would need PostgreSQL or another store.
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.api_key_buckets = (
            TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
            if settings.rate_limit_per_second > 0
            else None
        )
        self.webhook_buckets = (
            TokenBuckets(settings.webhook_rate_limit_per_second, settings.webhook_rate_limit_burst)
            if settings.webhook_rate_limit_per_second > 0
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path: str = scope["path"]
        wait = 0.0
        kind = ""
        if path.startswith(WEBHOOK_PATH_PREFIX) and scope["method"] == "POST":
            if self.webhook_buckets is not None:
                kind = "webhook endpoint"
                wait = self.webhook_buckets.take(path.removeprefix(WEBHOOK_PATH_PREFIX))
        elif path.startswith("/v1/") and self.api_key_buckets is not None:
            token, kind = _share_token(scope), "share token"
            if token is None:
                token, kind = _bearer_token(scope), "API key"
            if token is not None:
                # Buckets are keyed by the token's digest, so no token is kept in memory.
                wait = self.api_key_buckets.take(hashlib.sha256(token.encode()).hexdigest())

        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        scope[ROUTE_TEMPLATE_KEY] = template_for_path(scope)
        fields = {"kind": kind, "route": scope[ROUTE_TEMPLATE_KEY], "retry_after": retry_after}
        endpoint_id = path.removeprefix(WEBHOOK_PATH_PREFIX)
        if kind == "webhook endpoint" and tenant_id_from_endpoint_id(endpoint_id) is not None:
            fields["endpoint_id"] = loggable_endpoint_id(endpoint_id)
        # The path itself may carry an email or a whole webhook endpoint id, so it is not logged.
        log.info("request.rate_limited", **fields)
        response = problem_response(
            Request(scope),
            status=429,
            code="rate-limited",
            title="Too many requests",
            detail=f"This {kind} sent more requests than its rate limit allows; "
            f"retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
