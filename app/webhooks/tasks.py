"""The background fetcher for thin webhook payloads (Qualtrics, SurveyMonkey).

A thin payload is stored as `pending` with what to fetch and a `next_attempt_at`. Each pass
claims the due pending deliveries of every tenant in batches. A batch is one transaction,
and its rows stay locked (`FOR UPDATE SKIP LOCKED`) while their responses are fetched
concurrently, so fetchers in several service processes never claim the same delivery. A
delivery is fetched again only when its batch does not commit, for example because the
process died. A fetched response is written through the responses service and the
delivery becomes `processed`, in the same transaction.

A transport error, a timeout, or an HTTP 408, 429 or 5xx response schedules another attempt
with exponential backoff and jitter, until `webhook_fetch_max_attempts` attempts have
failed. Any other non-2xx response, or an API response the adapter cannot map, marks the
delivery `failed` with the reason at once. A failed delivery can be replayed once the
endpoint's settings are fixed.
"""

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal, cast

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import __version__
from app.db.session import session_scope
from app.metrics import FetchOutcomeLabel, ServiceMetrics
from app.privacy import service as privacy_service
from app.responses import service as response_service
from app.responses.schemas import ResponseIn
from app.settings import Settings
from app.webhooks import repository
from app.webhooks.adapters import get_adapter
from app.webhooks.adapters.base import FetchingAdapter
from app.webhooks.dependencies import Clock, system_clock
from app.webhooks.errors import MappingError
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.public_transport import (
    InvalidHostError,
    NonPublicAddressError,
    PublicAddressTransport,
)
from app.webhooks.service import endpoint_config, loggable_endpoint_id

log = structlog.get_logger()

FETCH_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_DELAY = timedelta(seconds=30)
MAX_RETRY_DELAY = timedelta(hours=1)
# Retried besides 5xx: 408 (the server timed out waiting) and 429 (too many requests).
RETRYABLE_STATUS_CODES = frozenset({408, 429})


@dataclass(frozen=True)
class FetchContext:
    """The dependencies of a fetch pass. `clock` decides which deliveries are due."""

    sessionmaker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    settings: Settings
    clock: Clock = system_clock
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)


@dataclass(frozen=True)
class FetchOutcome:
    """The result of one fetch attempt. `error` is set for `retry` and `failed`."""

    status: Literal["processed", "ignored", "retry", "failed"]
    response: ResponseIn | None = None
    error: str | None = None
    retry_after: timedelta | None = None


def create_fetch_client(*, allow_private_hosts: bool = False) -> httpx.AsyncClient:
    """Create the HTTP client that all fetches share.

    Redirects are not followed: a redirect would carry the API token to another host, so
    an API base URL that redirects fails with its status instead. Unless
    `allow_private_hosts`, requests reach public addresses only (`PublicAddressTransport`).
    """
    return httpx.AsyncClient(
        timeout=FETCH_TIMEOUT_SECONDS,
        follow_redirects=False,
        headers={"User-Agent": f"revcov/{__version__}"},
        transport=None if allow_private_hosts else PublicAddressTransport(),
    )


def retry_delay(attempts: int, retry_after: timedelta | None = None) -> timedelta:
    """Return the wait after `attempts` failed attempts: 30 s doubling per attempt up to
    1 h, jittered within its upper half so that many deliveries spread out, and at least
    `retry_after` (the platform's Retry-After), still capped at 1 h."""
    doublings = min(max(attempts - 1, 0), 16)
    ceiling = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * (1 << doublings))
    delay = ceiling / 2 + ceiling / 2 * random.random()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_RETRY_DELAY)


def _retry_after(response: httpx.Response, now: datetime) -> timedelta | None:
    """Read Retry-After as seconds or an HTTP date, or return None when it is absent or
    invalid."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return timedelta(seconds=min(int(value), int(MAX_RETRY_DELAY.total_seconds())))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(moment - now, timedelta(0))


def _fetching_adapter(source: str) -> FetchingAdapter | None:
    adapter = get_adapter(source)
    if adapter is None or not hasattr(adapter, "fetch"):
        return None
    return cast(FetchingAdapter, adapter)


def _log_fields(delivery: WebhookDelivery) -> dict[str, object]:
    return {
        "tenant_id": str(delivery.tenant_id),
        "endpoint_id": loggable_endpoint_id(delivery.endpoint_id),
        "delivery_id": delivery.id,
        "source": delivery.source,
    }


async def fetch_delivery(
    context: FetchContext, delivery: WebhookDelivery, endpoint: WebhookEndpoint | None
) -> FetchOutcome:
    """Fetch one pending delivery's response and classify the result, without using the
    database."""
    adapter = _fetching_adapter(delivery.source)
    if endpoint is None or adapter is None or delivery.fetch is None:
        return FetchOutcome("failed", error=f"source {delivery.source!r} has nothing to fetch")

    timeout = context.settings.webhook_fetch_timeout_seconds
    try:
        # A total limit: the client's own timeout applies to each read, so a server that
        # trickles bytes would otherwise hold the batch, and every tenant's fetches, forever.
        async with asyncio.timeout(timeout):
            response = await adapter.fetch(
                context.client, delivery.fetch, endpoint_config(endpoint)
            )
    except TimeoutError:
        return FetchOutcome(
            "retry", error=f"the {delivery.source} API did not answer within {timeout:g} seconds"
        )
    except MappingError as error:
        return FetchOutcome("failed", error=error.reason)
    except httpx.HTTPStatusError as error:
        code = error.response.status_code
        message = (
            f"the {delivery.source} API returned HTTP {code} for "
            f"{error.request.method} {error.request.url}"
        )
        if code >= 500 or code in RETRYABLE_STATUS_CODES:
            retry_after = _retry_after(error.response, context.clock())
            return FetchOutcome("retry", error=message, retry_after=retry_after)
        return FetchOutcome(
            "failed",
            error=f"{message}. Fix the endpoint's api_base_url or api_token if they are "
            "wrong, then replay the delivery",
        )
    except InvalidHostError:
        return FetchOutcome(
            "failed",
            error=f"the {delivery.source} API host in api_base_url is not a valid host name. "
            "Fix the endpoint's api_base_url, then replay the delivery",
        )
    except NonPublicAddressError:
        # Not retried: the address came from the endpoint's settings, which only a change
        # of them or of the name's DNS records fixes. The address itself is left out, so a
        # tenant cannot map internal host names through this message.
        return FetchOutcome(
            "failed",
            error=f"the {delivery.source} API host in api_base_url is or resolves to a "
            "non-public address. Fix the endpoint's api_base_url, then replay the delivery",
        )
    except httpx.HTTPError as error:
        return FetchOutcome(
            "retry",
            # The error's text is left out: it can quote request headers, the API token too.
            error=f"the {delivery.source} API request failed: {type(error).__name__}",
        )
    except Exception as error:
        # An adapter bug must not stop the other fetches of the batch. The delivery is
        # retried like a transient error, so a fixed release picks it up.
        log.exception("webhook.fetch_error", **_log_fields(delivery))
        return FetchOutcome("retry", error=f"unexpected {type(error).__name__}")

    if response is None:
        return FetchOutcome("ignored")
    return FetchOutcome("processed", response=response)


async def _record(
    session: AsyncSession, context: FetchContext, delivery: WebhookDelivery, outcome: FetchOutcome
) -> FetchOutcomeLabel:
    """Write the fetched response, if any, and the delivery's new status, and return the
    outcome recorded: `retry` only when another attempt is scheduled."""
    attempts = delivery.attempts + 1
    fields = {**_log_fields(delivery), "attempt": attempts}

    if outcome.status in ("processed", "ignored"):
        response_id = None
        if outcome.response is not None:
            response = await privacy_service.without_erased_data(
                session, delivery.tenant_id, outcome.response, delivery.received_at
            )
            await response_service.write_responses(session, delivery.tenant_id, [response])
            response_id = response.response_id
        await repository.set_fetch_outcome(
            session,
            delivery.tenant_id,
            delivery.id,
            status=outcome.status,
            attempts=attempts,
            next_attempt_at=None,
            error=None,
            response_id=response_id,
        )
        log.info("webhook.fetched", status=outcome.status, **fields)
        return outcome.status

    max_attempts = context.settings.webhook_fetch_max_attempts
    if outcome.status == "retry" and attempts < max_attempts:
        next_attempt_at = context.clock() + retry_delay(attempts, outcome.retry_after)
        await repository.set_fetch_outcome(
            session,
            delivery.tenant_id,
            delivery.id,
            status="pending",
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            error=outcome.error,
        )
        log.warning(
            "webhook.fetch_retry",
            error=outcome.error,
            next_attempt_at=next_attempt_at.isoformat(),
            **fields,
        )
        return "retry"

    reason = outcome.error or "the fetch failed"
    if outcome.status == "retry":
        reason = f"gave up after {attempts} attempts, and the last one failed with {reason}"
    await repository.set_fetch_outcome(
        session,
        delivery.tenant_id,
        delivery.id,
        status="failed",
        attempts=attempts,
        next_attempt_at=None,
        error=reason,
    )
    log.warning("webhook.fetch_failed", reason=reason, **fields)
    return "failed"


async def _run_batch(context: FetchContext) -> int:
    """Claim one batch of due deliveries, fetch them concurrently and record the outcomes,
    all in one transaction. Return the number claimed.

    The outcomes are counted in the metrics once the transaction has committed.
    """
    recorded: list[tuple[str, FetchOutcomeLabel]] = []
    async with session_scope(context.sessionmaker) as session:
        deliveries = await repository.claim_due_deliveries(
            session, due_by=context.clock(), limit=context.settings.webhook_fetch_batch_size
        )
        if not deliveries:
            return 0

        endpoints: dict[tuple[uuid.UUID, str], WebhookEndpoint | None] = {}
        for delivery in deliveries:
            key = (delivery.tenant_id, delivery.endpoint_id)
            if key not in endpoints:
                endpoints[key] = await repository.get_endpoint(session, *key)

        outcomes = await asyncio.gather(
            *(
                fetch_delivery(
                    context, delivery, endpoints[(delivery.tenant_id, delivery.endpoint_id)]
                )
                for delivery in deliveries
            )
        )
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            label = await _record_in_savepoint(session, context, delivery, outcome)
            recorded.append((delivery.source, label))

    for source, label in recorded:
        context.metrics.record_fetch(source, label)
    return len(recorded)


async def _record_in_savepoint(
    session: AsyncSession, context: FetchContext, delivery: WebhookDelivery, outcome: FetchOutcome
) -> FetchOutcomeLabel:
    """Record an outcome inside a savepoint, and return the outcome recorded.

    When one delivery's response cannot be written, only that delivery is retried later.
    The rest of the batch is kept rather than rolled back and fetched again.
    """
    try:
        async with session.begin_nested():
            return await _record(session, context, delivery, outcome)
    except Exception as error:
        log.exception("webhook.fetch_record_failed", **_log_fields(delivery))
        failure = f"storing the fetched response failed: {type(error).__name__}: {error}"
        return await _record(session, context, delivery, FetchOutcome("retry", error=failure))


async def run_due_fetches(context: FetchContext) -> int:
    """Run one pass: fetch every pending delivery due by `context.clock()`, batch by batch.

    Returns the number of deliveries claimed. Retried deliveries are due later, so a pass
    ends once a batch comes back smaller than the batch size.
    """
    claimed = 0
    while True:
        batch = await _run_batch(context)
        claimed += batch
        if batch < context.settings.webhook_fetch_batch_size:
            return claimed


async def run_fetch_loop(context: FetchContext) -> None:
    """Run a pass every `webhook_fetch_interval_seconds` until cancelled.

    A failed pass is logged and the loop goes on. Cancellation rolls back the batch in
    flight, so its deliveries stay pending for the next process.
    """
    interval = context.settings.webhook_fetch_interval_seconds
    failures = 0
    log.info("webhook.fetcher_started", interval_seconds=interval)
    try:
        while True:
            try:
                await run_due_fetches(context)
                failures = 0
            except Exception as error:
                # A database outage must not end the loop: the next pass tries again. Only
                # the first failure in a row carries the traceback.
                failures += 1
                if failures == 1:
                    log.exception("webhook.fetch_pass_failed", consecutive_failures=failures)
                else:
                    log.warning(
                        "webhook.fetch_pass_failed",
                        consecutive_failures=failures,
                        error=f"{type(error).__name__}: {error}",
                    )
            await asyncio.sleep(interval)
    finally:
        log.info("webhook.fetcher_stopped")


def start_fetch_loop(context: FetchContext) -> asyncio.Task[None]:
    return asyncio.create_task(run_fetch_loop(context), name="webhook-fetcher")


async def stop_fetch_loop(task: asyncio.Task[None]) -> None:
    """Cancel the loop and wait until it has stopped."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.error("webhook.fetcher_crashed", error=repr(task.exception()))
