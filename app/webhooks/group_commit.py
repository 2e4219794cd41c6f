"""Group commit for the webhook ingest fast path.

Each process writes processed deliveries through one `IngestWriter`, which keeps at most
one write in flight per tenant, so a tenant whose writes wait on its locks (a large batch
of responses, a time-zone change) holds up no other tenant. A delivery that arrives while
its tenant has no write in flight is written at once with the one-statement autocommit
path (`repository.ingest_processed`), so a single request waits no longer than before.
Deliveries that arrive while a write is in flight wait for it, and the tenant's next write
takes them all, up to `MAX_BATCH_DELIVERIES`, in one transaction. The batch then shares
the round trips, the WAL flush and the run of the statement-level quarter-state trigger.
Each request gets its response only after that commit, so a 2xx still means that its
delivery and response are durable.

A batch keeps the outcome that sequential processing in arrival order would give. It is
split into rounds, and a delivery goes into the round after the last one that contains its
delivery key or its response. Each round is one statement, which first locks its tenant
as `write_responses` does for several responses: the resolution lock shared, then the
quarter-state lock exclusively. Most batches are one round, sent alone in autocommit, so
a batch costs one round trip. A batch of several rounds runs them in one transaction
that takes the locks before the first round.

When a batch fails on a database error, its deliveries are written again one at a time,
so one bad delivery fails only its own request.

A single write takes the same two locks shared before it writes any row
(`repository.INGEST_PROCESSED`, `write_responses`), so a batch of another process never
waits for its rows while it waits for the batch's lock.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import Context
from dataclasses import dataclass

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from app.webhooks import repository
from app.webhooks.repository import ProcessedDelivery

log = structlog.get_logger()

# Deliveries written in one transaction at most. The statement carries each delivery's raw
# body, and the transaction holds its tenants' quarter-state locks until it commits.
MAX_BATCH_DELIVERIES = 64

_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


@dataclass(frozen=True)
class DeliveryWrite:
    """The outcome of writing one processed delivery."""

    # False when nothing was written because the endpoint changed or is gone.
    endpoint_current: bool
    # None for a duplicate delivery.
    delivery_id: int | None
    # True: the response was created, False: updated, None: the stored version was kept.
    inserted: bool | None
    matched: bool


def _database_error(error: Exception, *, closed: bool) -> DBAPIError:
    """Wrap a driver error in the SQLAlchemy error that the 503 handler expects."""
    error_class = OperationalError if closed else DBAPIError
    return error_class(
        "webhook ingest fast path", None, error, hide_parameters=True, connection_invalidated=closed
    )


async def _checkout(engine: AsyncEngine) -> PoolProxiedConnection:
    """Check out a pooled connection, raising a failure to connect as the SQLAlchemy error
    that `engine.connect()` would raise. `raw_connection` raises the driver's own."""
    dialect = engine.dialect
    try:
        return await engine.raw_connection()
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            None,
            None,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=dialect.is_disconnect(error, None, None),
            dialect=dialect,
        ) from error


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """Check out a pooled asyncpg connection, without SQLAlchemy's Connection object.

    It goes back to the pool without a transaction, so the pool's reset does nothing.
    Driver errors leave as `DBAPIError`, and the connection is then discarded.
    """
    pooled = await _checkout(engine)
    try:
        driver = pooled.driver_connection
        assert driver is not None
        try:
            yield driver
        except _DRIVER_ERRORS as error:
            # After an error the driver may still be reading the rest of the server's
            # reply, which never comes when the server is shutting down. A connection in
            # that state fails the next statement with InternalClientError ("another
            # operation is in progress"), so it never goes back to the pool.
            closed = driver.is_closed() or isinstance(error, asyncpg.InternalClientError)
            pooled.invalidate()
            raise _database_error(error, closed=closed) from error
        except BaseException:
            # Cancelled while a statement may still be running on the connection, which
            # must then not go back to the pool.
            pooled.invalidate()
            raise
    finally:
        pooled.close()


def _rounds(deliveries: Sequence[ProcessedDelivery]) -> list[list[int]]:
    """Split a batch into rounds of positions, so that no round contains a delivery key or a
    response twice and each delivery comes after every earlier one that shares either."""
    last_round: dict[tuple[object, ...], int] = {}
    rounds: list[list[int]] = []
    for position, item in enumerate(deliveries):
        values = item.values
        keys = (
            ("delivery", values["tenant_id"], values["endpoint_id"], values["delivery_key"]),
            ("response", values["tenant_id"], item.response.source, item.response.response_id),
        )
        number = max(last_round.get(key, -1) for key in keys) + 1
        for key in keys:
            last_round[key] = number
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(position)
    return rounds


def _write(row: asyncpg.Record) -> DeliveryWrite:
    return DeliveryWrite(
        endpoint_current=row["endpoint_current"],
        delivery_id=row["delivery_id"],
        inserted=row["inserted"],
        matched=bool(row["matched"]),
    )


async def _finish(
    connection: asyncpg.Connection, item: ProcessedDelivery, row: asyncpg.Record
) -> DeliveryWrite:
    """Read whether the response is matched when the write's snapshot could not see it,
    which only a concurrent first write of the same response causes."""
    if row["delivery_id"] is not None and row["matched"] is None:
        matched = await repository.is_matched_raw(
            connection,
            item.values["tenant_id"],
            item.response.source,
            item.response.response_id,
        )
        return DeliveryWrite(
            endpoint_current=True,
            delivery_id=row["delivery_id"],
            inserted=row["inserted"],
            matched=matched,
        )
    return _write(row)


async def write_one(engine: AsyncEngine, item: ProcessedDelivery) -> DeliveryWrite:
    """Write one delivery in one autocommit statement."""
    async with raw_connection(engine) as connection:
        row = await repository.ingest_processed(connection, item)
        return await _finish(connection, item, row)


async def write_batch(
    engine: AsyncEngine, deliveries: Sequence[ProcessedDelivery]
) -> list[DeliveryWrite]:
    """Write several deliveries in one transaction, with the outcomes of writing them one
    at a time in this order."""
    tenant_ids: list[uuid.UUID] = sorted({item.values["tenant_id"] for item in deliveries})
    rows: list[asyncpg.Record | None] = [None] * len(deliveries)
    rounds = _rounds(deliveries)
    async with raw_connection(engine) as connection:
        if len(rounds) == 1:
            # The statement locks its tenants first, so it runs alone in autocommit. That
            # saves two round trips, and PostgreSQL starts on the batch while the event
            # loop still sends the responses of the previous one.
            rows[:] = await repository.ingest_processed_batch(connection, deliveries)
        else:
            await repository.begin_and_lock_ingest_tenants(connection, tenant_ids)
            for positions in rounds:
                written = await repository.ingest_processed_batch(
                    connection, [deliveries[position] for position in positions]
                )
                for position, row in zip(positions, written, strict=True):
                    rows[position] = row
            # Any error before this point makes `raw_connection` discard the connection,
            # which ends the transaction without a commit.
            await connection.execute("COMMIT")
        results = []
        for item, row in zip(deliveries, rows, strict=True):
            assert row is not None
            results.append(await _finish(connection, item, row))
        return results


_Waiter = tuple[ProcessedDelivery, "asyncio.Future[DeliveryWrite]"]


class IngestWriter:
    """Group commit of processed deliveries for one process (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = MAX_BATCH_DELIVERIES) -> None:
        self.engine = engine
        self.max_batch = max_batch
        # By tenant: the deliveries waiting for the next write, and the task that writes.
        self._waiting: dict[uuid.UUID, list[_Waiter]] = {}
        self._flushers: dict[uuid.UUID, asyncio.Task[None]] = {}

    @property
    def queued(self) -> int:
        """The number of deliveries waiting for their tenant's next write."""
        return sum(len(waiting) for waiting in self._waiting.values())

    async def write(self, item: ProcessedDelivery) -> DeliveryWrite:
        """Write a delivery, alone or in the next batch, and return once it is committed.

        A request cancelled while it waits is left out of the batch if that has not
        started yet. Otherwise its delivery is written and committed like the others.
        """
        future: asyncio.Future[DeliveryWrite] = asyncio.get_running_loop().create_future()
        tenant_id: uuid.UUID = item.values["tenant_id"]
        self._waiting.setdefault(tenant_id, []).append((item, future))
        if tenant_id not in self._flushers:
            # A context of its own, so that its log lines do not carry this request's id.
            self._flushers[tenant_id] = asyncio.create_task(
                self._flush_waiting(tenant_id), context=Context()
            )
        return await future

    async def _flush_waiting(self, tenant_id: uuid.UUID) -> None:
        waiting = self._waiting[tenant_id]
        try:
            while waiting:
                waiters = waiting[: self.max_batch]
                del waiting[: self.max_batch]
                # A request cancelled while it waited is left out.
                batch = [(item, future) for item, future in waiters if not future.done()]
                if batch:
                    await self._flush(batch)
        finally:
            del self._flushers[tenant_id]
            # Deliveries left by a cancelled flush go out with the tenant's next write.
            if not waiting:
                del self._waiting[tenant_id]

    async def _flush(self, batch: list[_Waiter]) -> None:
        items = [item for item, _ in batch]
        try:
            if len(items) == 1:
                outcomes: list[DeliveryWrite | BaseException] = [await self._write_alone(items[0])]
            else:
                outcomes = list(await self._write_batch_or_each(items))
        except BaseException as error:
            # The flush itself was cancelled (at shutdown) or failed unexpectedly, so
            # every request of the batch gets the error.
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _write_alone(self, item: ProcessedDelivery) -> DeliveryWrite | BaseException:
        try:
            return await write_one(self.engine, item)
        except (DBAPIError, SQLAlchemyTimeoutError) as error:
            return error

    async def _write_batch_or_each(
        self, items: list[ProcessedDelivery]
    ) -> list[DeliveryWrite | BaseException]:
        try:
            return list(await write_batch(self.engine, items))
        except SQLAlchemyTimeoutError as error:
            # No pooled connection came free in time, and writing one at a time would
            # wait as long again for each delivery.
            return [error] * len(items)
        except DBAPIError as error:
            log.warning(
                "webhook.batch_failed",
                deliveries=len(items),
                error=type(error.orig).__name__,
                retry="one at a time",
            )
        return [await self._write_alone(item) for item in items]
