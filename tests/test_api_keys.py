"""API key management: list, create and revoke keys through the API."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_tenant
from tests.helpers import assert_problem, client_with_key, create_api_key


async def list_keys(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await api.get("/v1/api-keys")
    assert response.status_code == 200, response.text
    keys: list[dict[str, Any]] = response.json()
    return keys


class TestListKeys:
    async def test_initial_key_has_all_scopes(self, api: httpx.AsyncClient) -> None:
        [key] = await list_keys(api)

        assert key["name"] == "initial"
        assert key["scopes"] == ["ingest", "read", "admin"]
        assert key["revoked_at"] is None

    async def test_shows_prefix_not_key(self, api: httpx.AsyncClient, api_key: str) -> None:
        response = await api.get("/v1/api-keys")

        [key] = response.json()
        assert api_key.startswith(key["prefix"])
        assert len(key["prefix"]) < len(api_key)
        assert api_key not in response.text
        assert set(key) == {"id", "name", "prefix", "scopes", "created_at", "revoked_at"}

    async def test_other_tenant_keys_hidden(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await create_api_key(other_api, "read", name="other-tenant-key")

        names = {key["name"] for key in await list_keys(api)}

        assert names == {"initial"}


class TestCreateKey:
    async def test_returns_key_once(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        response = await api.post("/v1/api-keys", json={"name": "crm", "scopes": ["read"]})

        assert response.status_code == 201, response.text
        created = response.json()
        assert created["name"] == "crm"
        assert created["scopes"] == ["read"]
        assert created["api_key"].startswith(created["prefix"])
        listed = {key["id"]: key for key in await list_keys(api)}
        assert "api_key" not in listed[created["id"]]
        async with client_with_key(app, created["api_key"]) as client:
            assert (await client.get("/v1/accounts")).status_code == 200

    async def test_scopes_stored_in_fixed_order(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/v1/api-keys", json={"name": "all", "scopes": ["admin", "read", "ingest"]}
        )

        assert response.status_code == 201, response.text
        assert response.json()["scopes"] == ["ingest", "read", "admin"]

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "x", "scopes": []},
            {"name": "x", "scopes": ["write"]},
            {"name": "x", "scopes": ["read", "read"]},
            {"name": "", "scopes": ["read"]},
            {"scopes": ["read"]},
            {"name": "x"},
            {"name": "x", "scopes": ["read"], "api_key": "rcv_chosen"},
        ],
    )
    async def test_invalid_body_rejected(
        self, api: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        response = await api.post("/v1/api-keys", json=body)

        assert_problem(response, 422)
        assert len(await list_keys(api)) == 1


class TestRevokeKey:
    async def test_revoked_key_fails_at_once(self, app: FastAPI, api: httpx.AsyncClient) -> None:
        key = await create_api_key(api, "read")
        [key_id] = [item["id"] for item in await list_keys(api) if key.startswith(item["prefix"])]

        async with client_with_key(app, key) as client:
            before = await client.get("/v1/accounts")
            revoked = await api.delete(f"/v1/api-keys/{key_id}")
            after = await client.get("/v1/accounts")

        assert before.status_code == 200, before.text
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        assert_problem(after, 401)
        listed = {item["id"]: item for item in await list_keys(api)}
        assert listed[key_id]["revoked_at"] is not None

    async def test_revoking_twice_is_noop(self, api: httpx.AsyncClient) -> None:
        created = await api.post("/v1/api-keys", json={"name": "x", "scopes": ["read"]})
        key_id = created.json()["id"]

        first = await api.delete(f"/v1/api-keys/{key_id}")
        second = await api.delete(f"/v1/api-keys/{key_id}")

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        assert second.json()["revoked_at"] == first.json()["revoked_at"]

    async def test_last_admin_key_kept(self, api: httpx.AsyncClient) -> None:
        await create_api_key(api, "ingest", "read")
        [initial] = [key for key in await list_keys(api) if key["name"] == "initial"]

        response = await api.delete(f"/v1/api-keys/{initial['id']}")

        problem = assert_problem(response, 409)
        assert problem["type"] == "urn:revcov:problem:last-admin-key"
        assert (await api.get("/v1/accounts")).status_code == 200

    async def test_admin_key_revokes_own_after_new_one(
        self, app: FastAPI, api: httpx.AsyncClient
    ) -> None:
        new_admin = await create_api_key(api, "admin")
        [initial] = [key for key in await list_keys(api) if key["name"] == "initial"]

        response = await api.delete(f"/v1/api-keys/{initial['id']}")

        assert response.status_code == 200, response.text
        assert_problem(await api.get("/v1/accounts"), 401)
        async with client_with_key(app, new_admin) as client:
            assert (await client.get("/v1/api-keys")).status_code == 200

    async def test_revoked_admin_keys_do_not_count(self, api: httpx.AsyncClient) -> None:
        second = await api.post("/v1/api-keys", json={"name": "b", "scopes": ["admin"]})
        await api.delete(f"/v1/api-keys/{second.json()['id']}")
        [initial] = [key for key in await list_keys(api) if key["name"] == "initial"]

        response = await api.delete(f"/v1/api-keys/{initial['id']}")

        assert_problem(response, 409)

    async def test_concurrent_revokes_keep_one_admin(
        self, app: FastAPI, api: httpx.AsyncClient
    ) -> None:
        second = await api.post("/v1/api-keys", json={"name": "b", "scopes": ["admin"]})
        second_id, second_key = second.json()["id"], second.json()["api_key"]
        [initial] = [key for key in await list_keys(api) if key["name"] == "initial"]

        # Each admin key revokes the other. The loser gets 409 when it waits for the
        # winner's lock, or 401 when the winner revoked its key before it authenticated.
        async with client_with_key(app, second_key) as second_api:
            by_initial, by_second = await asyncio.gather(
                api.delete(f"/v1/api-keys/{second_id}"),
                second_api.delete(f"/v1/api-keys/{initial['id']}"),
            )
            survivor = api if by_initial.status_code == 200 else second_api
            keys = await list_keys(survivor)

        statuses = sorted([by_initial.status_code, by_second.status_code])
        assert statuses in ([200, 401], [200, 409])
        active_admins = [
            key for key in keys if key["revoked_at"] is None and "admin" in key["scopes"]
        ]
        assert len(active_admins) == 1

    async def test_other_tenant_key_is_404(
        self, app: FastAPI, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        created = await other_api.post("/v1/api-keys", json={"name": "x", "scopes": ["read"]})
        other_key_id = created.json()["id"]

        response = await api.delete(f"/v1/api-keys/{other_key_id}")

        assert_problem(response, 404)
        [key] = [item for item in await list_keys(other_api) if item["id"] == other_key_id]
        assert key["revoked_at"] is None

    async def test_unknown_key_is_404(self, api: httpx.AsyncClient) -> None:
        response = await api.delete("/v1/api-keys/00000000-0000-4000-8000-00000000abcd")

        assert_problem(response, 404)

    async def test_malformed_id_is_422(self, api: httpx.AsyncClient) -> None:
        response = await api.delete("/v1/api-keys/not-a-uuid")

        assert_problem(response, 422)


async def test_new_tenant_key_has_all_scopes(app: FastAPI) -> None:
    _, key = await make_tenant(app, "scopes")

    async with client_with_key(app, key) as client:
        keys = (await client.get("/v1/api-keys")).json()

    assert [item["scopes"] for item in keys] == [["ingest", "read", "admin"]]


class TestMissingKeyMessages:
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({}, "Missing API key; send it as `Authorization: Bearer <key>`."),
            ({"Authorization": "rcv_not_shown"}, "does not start with `Bearer `"),
            ({"Authorization": "Token rcv_not_shown"}, "does not start with `Bearer `"),
            ({"X-API-Key": "rcv_not_shown"}, "does not read the X-API-Key header"),
        ],
    )
    async def test_names_what_was_sent(
        self, client: httpx.AsyncClient, headers: dict[str, str], expected: str
    ) -> None:
        response = await client.get("/v1/accounts", headers=headers)

        problem = assert_problem(response, 401)
        assert expected in problem["detail"]
        assert "rcv_not_shown" not in response.text
