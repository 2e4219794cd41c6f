"""The audit log of administrative actions: API keys, webhook endpoints, tenant settings."""

import json
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.db.session import session_scope
from app.privacy.models import AuditEvent
from tests.helpers import assert_problem, client_with_key, create_api_key

ROTATED_SECRET = "new-secret-0123456789abcdef"
FIRST_SECRET = "old-secret-0123456789abcdef"


async def _events(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await api.get("/v1/audit-events", params={"limit": "1000"})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _initial_key_id(api: httpx.AsyncClient) -> str:
    keys = (await api.get("/v1/api-keys")).json()
    key_id: str = next(key["id"] for key in keys if key["name"] == "initial")
    return key_id


async def _stored_rows(app: FastAPI, tenant_id: str) -> str:
    """Return every stored audit row of the tenant as text, to search it for secrets."""
    async with session_scope(app.state.sessionmaker) as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.tenant_id == tenant_id).order_by(AuditEvent.id)
        )
        return json.dumps(
            [[row.action, row.object_id, row.details, row.counts] for row in rows], default=str
        )


class TestShareTokenEvents:
    async def test_creation_and_revocation_recorded(
        self, api: httpx.AsyncClient, app: FastAPI
    ) -> None:
        actor = await _initial_key_id(api)

        created = await api.post("/v1/share-tokens", json={"name": "lobby-screen"})
        token_id = created.json()["id"]
        revoked = await api.delete(f"/v1/share-tokens/{token_id}")
        again = await api.delete(f"/v1/share-tokens/{token_id}")
        events = await _events(api)
        tenant_id = (await api.get("/v1/tenant")).json()["id"]

        assert created.status_code == 201, created.text
        assert revoked.status_code == 200, revoked.text
        assert again.status_code == 200, again.text
        assert [event["action"] for event in events] == [
            "share_token.created",
            "share_token.revoked",
        ]
        assert [event["object_id"] for event in events] == [token_id, token_id]
        assert [event["actor_key_id"] for event in events] == [actor, actor]
        assert events[0]["details"] == {"name": "lobby-screen"}
        assert created.json()["share_token"] not in json.dumps(events)
        assert created.json()["share_token"] not in await _stored_rows(app, tenant_id)


class TestApiKeyEvents:
    async def test_creation_recorded(self, api: httpx.AsyncClient, app: FastAPI) -> None:
        actor = await _initial_key_id(api)

        created = await api.post("/v1/api-keys", json={"name": "crm-sync", "scopes": ["ingest"]})
        events = await _events(api)
        tenant_id = (await api.get("/v1/tenant")).json()["id"]

        assert created.status_code == 201, created.text
        assert [event["action"] for event in events] == ["api_key.created"]
        event = events[0]
        assert event["actor_key_id"] == actor
        assert event["object_id"] == created.json()["id"]
        assert event["details"] == {"name": "crm-sync", "scopes": ["ingest"]}
        assert created.json()["api_key"] not in json.dumps(events)
        assert created.json()["api_key"] not in await _stored_rows(app, tenant_id)

    async def test_revocation_recorded(self, api: httpx.AsyncClient, app: FastAPI) -> None:
        key = await create_api_key(api, "read", name="reporting")
        key_id = next(
            item["id"]
            for item in (await api.get("/v1/api-keys")).json()
            if item["name"] == "reporting"
        )

        revoked = await api.delete(f"/v1/api-keys/{key_id}")
        again = await api.delete(f"/v1/api-keys/{key_id}")
        events = await _events(api)

        assert revoked.status_code == 200, revoked.text
        assert again.status_code == 200, again.text
        assert [event["action"] for event in events] == ["api_key.created", "api_key.revoked"]
        assert events[1]["object_id"] == key_id
        assert events[1]["actor_key_id"] == await _initial_key_id(api)
        assert key not in json.dumps(events)

    async def test_actor_is_requesting_key(self, api: httpx.AsyncClient, app: FastAPI) -> None:
        admin = await create_api_key(api, "admin", name="second-admin")
        admin_id = next(
            item["id"]
            for item in (await api.get("/v1/api-keys")).json()
            if item["name"] == "second-admin"
        )

        async with client_with_key(app, admin) as second:
            created = await second.post("/v1/api-keys", json={"name": "x", "scopes": ["read"]})
        events = await _events(api)

        assert created.status_code == 201, created.text
        assert events[-1]["action"] == "api_key.created"
        assert events[-1]["actor_key_id"] == admin_id

    async def test_last_admin_key_rejection_not_recorded(self, api: httpx.AsyncClient) -> None:
        key_id = await _initial_key_id(api)

        rejected = await api.delete(f"/v1/api-keys/{key_id}")
        events = await _events(api)

        assert_problem(rejected, 409)
        assert events == []


class TestWebhookEndpointEvents:
    async def test_creation_recorded_without_secret(
        self, api: httpx.AsyncClient, app: FastAPI
    ) -> None:
        created = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": FIRST_SECRET}
        )
        events = await _events(api)
        tenant_id = (await api.get("/v1/tenant")).json()["id"]

        assert created.status_code == 201, created.text
        assert [event["action"] for event in events] == ["webhook_endpoint.created"]
        assert events[0]["object_id"] == created.json()["id"]
        assert events[0]["details"] == {"source": "typeform", "secret_count": 1}
        assert FIRST_SECRET not in json.dumps(events)
        assert FIRST_SECRET not in await _stored_rows(app, tenant_id)

    async def test_generated_secret_not_recorded(self, api: httpx.AsyncClient) -> None:
        created = await api.post("/v1/webhook-endpoints", json={"source": "typeform"})
        events = await _events(api)

        assert created.status_code == 201, created.text
        assert created.json()["secret"] not in json.dumps(events)

    async def test_secret_rotation_recorded(self, api: httpx.AsyncClient, app: FastAPI) -> None:
        created = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": FIRST_SECRET}
        )
        endpoint_id = created.json()["id"]

        rotated = await api.patch(
            f"/v1/webhook-endpoints/{endpoint_id}",
            json={"secrets": [FIRST_SECRET, ROTATED_SECRET]},
        )
        events = await _events(api)
        tenant_id = (await api.get("/v1/tenant")).json()["id"]
        stored = await _stored_rows(app, tenant_id)

        assert rotated.status_code == 200, rotated.text
        assert [event["action"] for event in events] == [
            "webhook_endpoint.created",
            "webhook_endpoint.updated",
        ]
        assert events[1]["object_id"] == endpoint_id
        assert events[1]["details"] == {"fields": ["secrets"], "secret_count": 2}
        for secret in (FIRST_SECRET, ROTATED_SECRET):
            assert secret not in json.dumps(events)
            assert secret not in stored

    async def test_mapping_change_lists_fields(self, api: httpx.AsyncClient) -> None:
        created = await api.post("/v1/webhook-endpoints", json={"source": "typeform"})
        endpoint_id = created.json()["id"]

        await api.patch(
            f"/v1/webhook-endpoints/{endpoint_id}",
            json={"score_field": "nps", "token": "a-shared-token-0123456789"},
        )
        events = await _events(api)

        assert events[-1]["details"]["fields"] == ["score_field", "token"]
        assert "a-shared-token-0123456789" not in json.dumps(events)

    async def test_rejected_change_not_recorded(self, api: httpx.AsyncClient) -> None:
        created = await api.post("/v1/webhook-endpoints", json={"source": "typeform"})
        endpoint_id = created.json()["id"]

        rejected = await api.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"secrets": ["too-short"]}
        )
        events = await _events(api)

        assert_problem(rejected, 422)
        assert [event["action"] for event in events] == ["webhook_endpoint.created"]


class TestTenantSettingsEvents:
    async def test_change_records_old_and_new(self, api: httpx.AsyncClient) -> None:
        patched = await api.patch(
            "/v1/tenant", json={"timezone": "Europe/Berlin", "coverage_target": 0.75}
        )
        events = await _events(api)

        assert patched.status_code == 200, patched.text
        assert [event["action"] for event in events] == ["tenant.updated"]
        details = events[0]["details"]
        assert details["fields"] == ["coverage_target", "timezone"]
        assert details["from"] == {"coverage_target": 0.8, "timezone": "UTC"}
        assert details["to"] == {"coverage_target": 0.75, "timezone": "Europe/Berlin"}
        assert events[0]["actor_key_id"] == await _initial_key_id(api)

    async def test_empty_change_not_recorded(self, api: httpx.AsyncClient) -> None:
        patched = await api.patch("/v1/tenant", json={})
        events = await _events(api)

        assert patched.status_code == 200, patched.text
        assert events == []

    async def test_invalid_change_not_recorded(self, api: httpx.AsyncClient) -> None:
        rejected = await api.patch("/v1/tenant", json={"timezone": "Mars/Olympus"})
        events = await _events(api)

        assert_problem(rejected, 422)
        assert events == []


class TestAuditLogAccess:
    async def test_other_tenant_sees_none(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await api.patch("/v1/tenant", json={"timezone": "Europe/Berlin"})

        listed = await other_api.get("/v1/audit-events")

        assert listed.json()["items"] == []

    async def test_key_without_admin_forbidden(self, api: httpx.AsyncClient, app: FastAPI) -> None:
        reader = await create_api_key(api, "read")

        async with client_with_key(app, reader) as client:
            listed = await client.get("/v1/audit-events")

        assert_problem(listed, 403)

    async def test_deletion_records_actor(self, api: httpx.AsyncClient) -> None:
        item = {
            "source": "native",
            "response_id": "spam-1",
            "score": 0,
            "submitted_at": "2026-02-01T00:00:00Z",
        }
        await api.post("/v1/responses", json={"responses": [item]})

        deleted = await api.delete("/v1/responses/native/spam-1")
        events = await _events(api)

        assert deleted.status_code == 204, deleted.text
        assert events[-1]["action"] == "response.deleted"
        assert events[-1]["actor_key_id"] == await _initial_key_id(api)
