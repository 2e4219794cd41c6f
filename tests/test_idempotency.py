"""Idempotency-Key on POST /v1/revenue-updates and POST /v1/responses."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from app.db.session import session_scope
from app.idempotency.service import advisory_lock_id
from tests.helpers import assert_problem

UPDATES_PATH = "/v1/revenue-updates"
RESPONSES_PATH = "/v1/responses"


def revenue_body(account: str = "ACME-1", amount: str = "100.00") -> dict[str, Any]:
    update = {
        "account_external_id": account,
        "amount": amount,
        "currency": "USD",
        "effective_at": "2026-01-01T00:00:00Z",
    }
    return {"updates": [update]}


def responses_body(response_id: str = "r1", score: int = 9) -> dict[str, Any]:
    item = {
        "source": "native",
        "response_id": response_id,
        "account_external_id": "ACME-1",
        "email": f"{response_id}@example.com",
        "submitted_at": "2026-02-01T12:00:00Z",
        "score": score,
    }
    return {"responses": [item]}


def csv_body(account: str = "ACME-1") -> bytes:
    header = "account_external_id,amount,currency,effective_at"
    return f"{header}\n{account},100.00,USD,2026-01-01\n".encode()


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def tenant_id_of(api: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await api.get("/v1/tenant")).json()["id"])


class TestReplay:
    async def test_revenue_update_replayed(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())

        first = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed(key))
        second = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed(key))

        assert first.status_code == 200, first.text
        assert first.json()["created"] == 1
        assert "Idempotent-Replayed" not in first.headers
        assert second.status_code == first.status_code
        assert second.json() == first.json()
        assert second.headers["Idempotent-Replayed"] == "true"

    async def test_replay_does_not_write_again(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        await api.post(UPDATES_PATH, json=revenue_body(amount="100.00"), headers=keyed(key))
        await api.post(UPDATES_PATH, json=revenue_body(amount="200.00"))

        replay = await api.post(
            UPDATES_PATH, json=revenue_body(amount="100.00"), headers=keyed(key)
        )

        assert replay.status_code == 200, replay.text
        account = (await api.get("/v1/accounts/ACME-1")).json()
        assert account["revenue"]["amount"] == "200.00"

    async def test_response_batch_replayed(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        first = await api.post(RESPONSES_PATH, json=responses_body(score=9), headers=keyed(key))
        await api.post(RESPONSES_PATH, json=responses_body(score=3))

        replay = await api.post(RESPONSES_PATH, json=responses_body(score=9), headers=keyed(key))

        assert first.status_code == 200, first.text
        assert replay.json() == first.json()
        stored = (await api.get("/v1/responses/native/r1")).json()
        assert stored["score"] == 3

    async def test_key_order_and_spacing_ignored(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        compact = (
            '{"updates":[{"account_external_id":"ACME-1","amount":"5.00",'
            '"currency":"USD","effective_at":"2026-01-01T00:00:00Z"}]}'
        )
        reordered = (
            '{ "updates": [ { "effective_at": "2026-01-01T00:00:00Z", "currency": "USD", '
            '"amount": "5.00", "account_external_id": "ACME-1" } ] }'
        )
        headers = {**keyed(key), "Content-Type": "application/json"}

        first = await api.post(UPDATES_PATH, content=compact, headers=headers)
        second = await api.post(UPDATES_PATH, content=reordered, headers=headers)

        assert first.status_code == 200, first.text
        assert second.headers.get("Idempotent-Replayed") == "true"

    async def test_without_key_writes_each_time(self, api: httpx.AsyncClient) -> None:
        first = await api.post(UPDATES_PATH, json=revenue_body())
        second = await api.post(UPDATES_PATH, json=revenue_body())

        assert first.json()["created"] == 1
        assert second.json()["created"] == 0
        assert "Idempotent-Replayed" not in second.headers


class TestKeyReuse:
    async def test_other_body_is_422(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        await api.post(UPDATES_PATH, json=revenue_body(amount="100.00"), headers=keyed(key))

        response = await api.post(
            UPDATES_PATH, json=revenue_body(amount="999.00"), headers=keyed(key)
        )

        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:revcov:problem:idempotency-key-reused"
        account = (await api.get("/v1/accounts/ACME-1")).json()
        assert account["revenue"]["amount"] == "100.00"

    async def test_other_route_is_422(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed(key))

        response = await api.post(RESPONSES_PATH, json=responses_body(), headers=keyed(key))

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/responses/native/r1"), 404)

    async def test_csv_import_replayed(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        headers = {**keyed(key), "Content-Type": "text/csv"}

        first = await api.post(UPDATES_PATH, content=csv_body(), headers=headers)
        second = await api.post(UPDATES_PATH, content=csv_body(), headers=headers)

        assert first.status_code == 200, first.text
        assert first.json()["created"] == 1
        assert "Idempotent-Replayed" not in first.headers
        assert second.json() == first.json()
        assert second.headers["Idempotent-Replayed"] == "true"

    async def test_csv_media_type_case_ignored(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        first = await api.post(
            UPDATES_PATH, content=csv_body(), headers={**keyed(key), "Content-Type": "text/csv"}
        )

        again = await api.post(
            UPDATES_PATH,
            content=csv_body(),
            headers={**keyed(key), "Content-Type": "Text/CSV; charset=utf-8"},
        )

        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"

    async def test_csv_key_reuse_is_422(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        headers = {**keyed(key), "Content-Type": "text/csv"}
        await api.post(UPDATES_PATH, content=csv_body("ACME-1"), headers=headers)

        other_file = await api.post(UPDATES_PATH, content=csv_body("ACME-2"), headers=headers)
        other_options = await api.post(
            UPDATES_PATH, content=csv_body("ACME-1"), headers=headers, params={"decimal": ","}
        )
        as_json = await api.post(UPDATES_PATH, json=revenue_body("ACME-3"), headers=keyed(key))

        for response in (other_file, other_options, as_json):
            problem = assert_problem(response, 422)
            assert problem["type"] == "urn:revcov:problem:idempotency-key-reused"
        for account in ("ACME-2", "ACME-3"):
            assert_problem(await api.get(f"/v1/accounts/{account}"), 404)

    async def test_keys_are_per_tenant(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        key = str(uuid.uuid4())
        await api.post(UPDATES_PATH, json=revenue_body(amount="100.00"), headers=keyed(key))

        response = await other_api.post(
            UPDATES_PATH, json=revenue_body(amount="7.00"), headers=keyed(key)
        )

        assert response.status_code == 200, response.text
        assert "Idempotent-Replayed" not in response.headers
        account = (await other_api.get("/v1/accounts/ACME-1")).json()
        assert account["revenue"]["amount"] == "7.00"

    async def test_failed_write_keeps_key_free(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        too_precise = {"updates": [{**revenue_body()["updates"][0], "amount": "1.001"}]}

        failed = await api.post(UPDATES_PATH, json=too_precise, headers=keyed(key))
        retried = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed(key))

        assert_problem(failed, 422)
        assert retried.status_code == 200, retried.text
        assert "Idempotent-Replayed" not in retried.headers

    @pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é".encode()])
    async def test_invalid_key_rejected(self, api: httpx.AsyncClient, key: str | bytes) -> None:
        headers = [(b"Idempotency-Key", key if isinstance(key, bytes) else key.encode())]
        response = await api.post(UPDATES_PATH, json=revenue_body(), headers=headers)

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/accounts/ACME-1"), 404)


class TestInFlight:
    async def test_locked_key_is_409(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        lock_id = advisory_lock_id(await tenant_id_of(api), key)

        # Another connection holds the key's lock, as a request in another process would.
        async with session_scope(app.state.sessionmaker) as holder:
            await holder.execute(select(func.pg_advisory_xact_lock(lock_id)))
            blocked = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed(key))
        released = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed(key))

        problem = assert_problem(blocked, 409)
        assert problem["type"] == "urn:revcov:problem:idempotency-key-in-flight"
        assert blocked.headers["retry-after"] == "1"
        assert released.status_code == 200, released.text
        assert released.json()["created"] == 1

    async def test_concurrent_requests_write_once(self, api: httpx.AsyncClient) -> None:
        key = str(uuid.uuid4())
        body = {"updates": [revenue_body(f"ACME-{n}")["updates"][0] for n in range(500)]}

        results = await asyncio.gather(
            *(api.post(UPDATES_PATH, json=body, headers=keyed(key)) for _ in range(4))
        )

        statuses = sorted(response.status_code for response in results)
        assert set(statuses) <= {200, 409}
        successes = [response for response in results if response.status_code == 200]
        assert successes
        assert all(response.json()["created"] == 500 for response in successes)
        fresh = [r for r in successes if "Idempotent-Replayed" not in r.headers]
        assert len(fresh) == 1


class TestRetention:
    async def _insert_key(
        self, app: FastAPI, tenant_id: uuid.UUID, key: str, age: timedelta
    ) -> None:
        async with session_scope(app.state.sessionmaker) as session:
            await session.execute(
                text(
                    "INSERT INTO idempotency_keys "
                    "(tenant_id, key, request_hash, status_code, response_body, created_at) "
                    "VALUES (:tenant_id, :key, :hash, 200, '{}'::jsonb, "
                    "now() - CAST(:age AS interval))"
                ),
                {"tenant_id": tenant_id, "key": key, "hash": b"\0" * 32, "age": age},
            )

    async def _stored_keys(self, app: FastAPI, tenant_id: uuid.UUID) -> set[str]:
        async with session_scope(app.state.sessionmaker) as session:
            rows = await session.execute(
                text("SELECT key FROM idempotency_keys WHERE tenant_id = :tenant_id"),
                {"tenant_id": tenant_id},
            )
            return {row[0] for row in rows}

    async def test_expired_keys_deleted(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        tenant_id = await tenant_id_of(api)
        await self._insert_key(app, tenant_id, "old", timedelta(hours=25))
        await self._insert_key(app, tenant_id, "recent", timedelta(hours=23))

        response = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed("new"))

        assert response.status_code == 200, response.text
        assert await self._stored_keys(app, tenant_id) == {"recent", "new"}

    async def test_day_old_key_still_honoured(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        tenant_id = await tenant_id_of(api)
        await self._insert_key(app, tenant_id, "recent", timedelta(hours=23))

        response = await api.post(UPDATES_PATH, json=revenue_body(), headers=keyed("recent"))

        assert_problem(response, 422)
