"""Group commit of webhook deliveries (`app.webhooks.group_commit`).

Each test takes a tenant's resolution lock from a separate connection, so that a first
delivery waits inside its write. The deliveries sent meanwhile queue in the writer in the
order sent, and go out as one batch once the lock is released.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from app.responses.repository import QUARTER_STATE_LOCK_CLASS, RESOLUTION_LOCK_CLASS
from app.webhooks.group_commit import IngestWriter
from tests.test_webhooks_typeform import (
    answers_of,
    create_endpoint,
    deliver,
    new_token,
    stored_response,
    variant,
)


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.execute("SELECT pg_advisory_unlock_all()")
        await connection.close()


def _tenant_of(endpoint: dict[str, Any]) -> str:
    return str(uuid.UUID(hex=endpoint["id"].split("_")[1]))


def _scored(token: str, score: int, *, event_id: str | None = None, second: int = 0) -> bytes:
    """A delivery of response `token` with this score, submitted `second` seconds after a
    fixed time, under its own event id by default."""

    def change(payload: dict[str, Any]) -> None:
        payload["event_id"] = event_id or new_token()
        payload["form_response"]["submitted_at"] = f"2026-01-10T10:00:{second:02d}Z"
        answers_of(payload)[0]["number"] = score

    return variant(token, change)


async def _wait_until(condition: Callable[[], Awaitable[bool]], description: str) -> None:
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting until {description}")


async def _lock_waiters(admin: asyncpg.Connection) -> int:
    waiting: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'revcov' "
        "AND wait_event_type = 'Lock'"
    )
    return waiting


class Batch:
    """Deliveries queued behind a first one that waits on the tenant's resolution lock."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, admin: asyncpg.Connection):
        self.writer: IngestWriter = app.state.webhook_ingest_writer
        self.client = client
        self.admin = admin
        self.tasks: list[asyncio.Task[httpx.Response]] = []

    async def hold(self, endpoint: dict[str, Any]) -> asyncio.Task[httpx.Response]:
        """Start a first delivery to `endpoint` that waits on its tenant's lock."""
        await self.admin.execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            RESOLUTION_LOCK_CLASS,
            _tenant_of(endpoint),
        )
        first = asyncio.create_task(deliver(self.client, endpoint["id"], variant(new_token())))

        async def waiting() -> bool:
            return await _lock_waiters(self.admin) == 1

        await _wait_until(waiting, "the first delivery waits on the lock")
        return first

    async def queue(self, endpoint: dict[str, Any], body: bytes) -> asyncio.Task[httpx.Response]:
        """Send a delivery and wait until it is queued, so that the batch keeps this order."""
        queued = self.writer.queued
        task = asyncio.create_task(deliver(self.client, endpoint["id"], body))
        self.tasks.append(task)

        async def in_queue() -> bool:
            return self.writer.queued == queued + 1

        await _wait_until(in_queue, "the delivery is queued")
        return task

    async def release(self) -> list[httpx.Response]:
        await self.admin.execute("SELECT pg_advisory_unlock_all()")
        return list(await asyncio.gather(*self.tasks))


async def _transactions(admin: asyncpg.Connection, delivery_ids: Sequence[int]) -> set[str]:
    """Return the ids of the transactions that stored these deliveries."""
    rows = await admin.fetch(
        "SELECT xmin::text FROM webhook_deliveries WHERE id = ANY($1::bigint[])",
        list(delivery_ids),
    )
    assert len(rows) == len(delivery_ids)
    return {row["xmin"] for row in rows}


async def test_batch_in_one_transaction(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    endpoint = await create_endpoint(api)
    batch = Batch(app, client, admin)
    first = await batch.hold(endpoint)
    tokens = [new_token() for _ in range(5)]
    for token in tokens:
        await batch.queue(endpoint, variant(token))

    answered = await batch.release()

    assert (await first).status_code == 200
    assert [response.status_code for response in answered] == [200] * 5
    assert [response.json()["status"] for response in answered] == ["processed"] * 5
    delivery_ids = [response.json()["delivery_id"] for response in answered]
    assert len(await _transactions(admin, delivery_ids)) == 1
    for token in tokens:
        assert (await stored_response(api, token))["score"] == 9


async def test_batch_locks_tenant_before_writing(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    # A batch of one round runs as one autocommit statement, which must take its tenant's
    # quarter-state lock before it claims a delivery key or writes a row.
    endpoint = await create_endpoint(api)
    tenant = _tenant_of(endpoint)
    batch = Batch(app, client, admin)
    first = await batch.hold(endpoint)
    tokens = [new_token() for _ in range(3)]
    for token in tokens:
        await batch.queue(endpoint, variant(token))
    await admin.execute(
        "SELECT pg_advisory_lock_shared($1, hashtext($2))", QUARTER_STATE_LOCK_CLASS, tenant
    )
    await admin.execute(
        "SELECT pg_advisory_unlock($1, hashtext($2))", RESOLUTION_LOCK_CLASS, tenant
    )
    # A single write takes the quarter-state lock shared, so the first delivery goes on.
    assert (await first).status_code == 200

    async def batch_waits() -> bool:
        return await _lock_waiters(admin) == 1

    await _wait_until(batch_waits, "the batch waits on the quarter-state lock")
    waiting = await admin.fetchrow(
        "SELECT backend_xid, state FROM pg_stat_activity "
        "WHERE application_name = 'revcov' AND wait_event_type = 'Lock'"
    )
    assert waiting is not None
    # PostgreSQL assigns a transaction id at the first write, so none means nothing is
    # written yet.
    assert waiting["backend_xid"] is None
    assert waiting["state"] == "active"

    answered = await batch.release()

    assert [response.status_code for response in answered] == [200] * 3
    delivery_ids = [response.json()["delivery_id"] for response in answered]
    assert len(await _transactions(admin, delivery_ids)) == 1
    for token in tokens:
        assert (await stored_response(api, token))["score"] == 9


async def test_same_delivery_twice_in_batch(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    endpoint = await create_endpoint(api)
    token = new_token()
    batch = Batch(app, client, admin)
    await batch.hold(endpoint)
    await batch.queue(endpoint, variant(token))
    await batch.queue(endpoint, variant(token))
    await batch.queue(endpoint, variant(new_token()))

    answered = await batch.release()

    assert [response.status_code for response in answered] == [200, 200, 200]
    statuses = [response.json()["status"] for response in answered]
    assert statuses == ["processed", "duplicate", "processed"]
    delivery_ids = [answered[0].json()["delivery_id"], answered[2].json()["delivery_id"]]
    assert len(await _transactions(admin, delivery_ids)) == 1
    listed = await api.get("/v1/webhook-deliveries", params={"endpoint_id": endpoint["id"]})
    keys = [delivery["delivery_key"] for delivery in listed.json()["items"]]
    assert keys.count(token) == 1


@pytest.mark.parametrize(
    "versions",
    [
        [(7, 0), (3, 1)],
        [(7, 1), (3, 0)],
        [(7, 0), (7, 0)],
        [(7, 0), (3, 0)],
        [(7, 0), (3, 1), (5, 2), (8, 1)],
    ],
    ids=["newer", "older", "same", "same version changed", "four"],
)
async def test_same_response_twice_in_batch(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin: asyncpg.Connection,
    versions: list[tuple[int, int]],
) -> None:
    # Each version is a separate delivery (its own event id) of the same response. The
    # batch must store what delivering them one at a time in the same order stores.
    endpoint = await create_endpoint(api)
    token, sequential_token = new_token(), new_token()
    batch = Batch(app, client, admin)
    await batch.hold(endpoint)
    for score, second in versions:
        await batch.queue(endpoint, _scored(token, score, second=second))
    answered = await batch.release()
    for score, second in versions:
        alone = await deliver(
            client, endpoint["id"], _scored(sequential_token, score, second=second)
        )
        assert alone.status_code == 200, alone.text

    assert [response.status_code for response in answered] == [200] * len(versions)
    statuses = [response.json()["status"] for response in answered]
    assert statuses == ["processed"] * len(versions)
    delivery_ids = [response.json()["delivery_id"] for response in answered]
    assert len(await _transactions(admin, delivery_ids)) == 1
    batched = await stored_response(api, token)
    sequential = await stored_response(api, sequential_token)
    for varying in ("response_id", "received_at"):
        del batched[varying], sequential[varying]
    assert batched == sequential


async def test_endpoints_share_tenant_batch(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    endpoints = [await create_endpoint(api), await create_endpoint(api)]
    token = new_token()
    batch = Batch(app, client, admin)
    await batch.hold(endpoints[0])
    # The same delivery key and response id at two endpoints of one tenant: two separate
    # deliveries of one response.
    for endpoint in endpoints:
        await batch.queue(endpoint, _scored(token, 4, event_id=token))
    other_token = new_token()
    await batch.queue(endpoints[1], _scored(other_token, 6))

    answered = await batch.release()

    assert [response.status_code for response in answered] == [200] * 3
    assert [response.json()["status"] for response in answered] == ["processed"] * 3
    delivery_ids = [response.json()["delivery_id"] for response in answered]
    assert len(await _transactions(admin, delivery_ids)) == 1
    assert (await stored_response(api, token))["score"] == 4
    assert (await stored_response(api, other_token))["score"] == 6


async def test_held_tenant_holds_up_no_other(
    app: FastAPI,
    api: httpx.AsyncClient,
    other_api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin: asyncpg.Connection,
) -> None:
    held_endpoint = await create_endpoint(api)
    other_endpoint = await create_endpoint(other_api)
    batch = Batch(app, client, admin)
    await batch.hold(held_endpoint)
    queued = await batch.queue(held_endpoint, _scored(new_token(), 5))
    token = new_token()

    # Stored while the first tenant's writes wait on its lock.
    other = await deliver(client, other_endpoint["id"], _scored(token, 8))

    assert other.status_code == 200
    assert not queued.done()
    assert (await stored_response(other_api, token))["score"] == 8
    answered = await batch.release()
    assert [response.status_code for response in answered] == [200]


async def test_failing_delivery_fails_alone(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    # A constraint that raises a data exception for one response id imitates a value
    # that validation let through.
    endpoint = await create_endpoint(api)
    good, bad, also_good = new_token(), new_token(), new_token()
    await admin.execute(
        "ALTER TABLE responses ADD CONSTRAINT test_group_commit_bad "
        f"CHECK (CASE WHEN response_id = '{bad}' THEN 1 / (length(response_id) - 32) = 1 "
        "ELSE true END) NOT VALID"
    )
    try:
        batch = Batch(app, client, admin)
        await batch.hold(endpoint)
        for token in (good, bad, also_good):
            await batch.queue(endpoint, variant(token))
        answered = await batch.release()
    finally:
        await admin.execute("ALTER TABLE responses DROP CONSTRAINT test_group_commit_bad")

    assert [response.status_code for response in answered] == [200, 422, 200]
    assert (await stored_response(api, good))["score"] == 9
    assert (await stored_response(api, also_good))["score"] == 9
    assert (await api.get(f"/v1/responses/typeform/{bad}")).status_code == 404
    retried = await deliver(client, endpoint["id"], variant(bad))
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "processed"


async def test_cancelled_while_queued_left_out(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    endpoint = await create_endpoint(api)
    cancelled_token, kept_token = new_token(), new_token()
    batch = Batch(app, client, admin)
    await batch.hold(endpoint)
    cancelled_request = await batch.queue(endpoint, variant(cancelled_token))
    await batch.queue(endpoint, variant(kept_token))

    cancelled_request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled_request
    batch.tasks.remove(cancelled_request)
    remaining = await batch.release()

    assert remaining[0].json()["status"] == "processed"
    assert (await stored_response(api, kept_token))["score"] == 9
    assert (await api.get(f"/v1/responses/typeform/{cancelled_token}")).status_code == 404
    retried = await deliver(client, endpoint["id"], variant(cancelled_token))
    assert retried.json()["status"] == "processed"


async def test_cancelled_during_write_consistent(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    # The quarter-state lock held shared lets the first delivery, a single write, through,
    # and holds the batch after it, which takes that lock exclusively once it has started.
    endpoint = await create_endpoint(api)
    cancelled_token, kept_token = new_token(), new_token()
    batch = Batch(app, client, admin)
    first = await batch.hold(endpoint)
    cancelled_request = await batch.queue(endpoint, variant(cancelled_token))
    await batch.queue(endpoint, variant(kept_token))
    await admin.execute(
        "SELECT pg_advisory_lock_shared($1, hashtext($2))",
        QUARTER_STATE_LOCK_CLASS,
        _tenant_of(endpoint),
    )
    await admin.execute(
        "SELECT pg_advisory_unlock($1, hashtext($2))",
        RESOLUTION_LOCK_CLASS,
        _tenant_of(endpoint),
    )
    assert (await first).status_code == 200

    async def batch_waiting() -> bool:
        return batch.writer.queued == 0 and await _lock_waiters(admin) == 1

    await _wait_until(batch_waiting, "the batch waits on the quarter-state lock")
    cancelled_request.cancel()
    batch.tasks.remove(cancelled_request)
    remaining = await batch.release()

    assert remaining[0].json()["status"] == "processed"
    assert (await stored_response(api, kept_token))["score"] == 9
    # The cancelled request's delivery was committed with the batch, with its response.
    assert (await stored_response(api, cancelled_token))["score"] == 9
    retried = await deliver(client, endpoint["id"], variant(cancelled_token))
    assert retried.json()["status"] == "duplicate"


async def test_idle_writer_writes_alone(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    endpoint = await create_endpoint(api)
    tokens = [new_token(), new_token()]

    answered = [await deliver(client, endpoint["id"], variant(token)) for token in tokens]

    delivery_ids = [response.json()["delivery_id"] for response in answered]
    assert len(await _transactions(admin, delivery_ids)) == 2
