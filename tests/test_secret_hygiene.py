"""API keys, webhook secrets and personal data stay out of logs, error bodies and reprs."""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from app.tenancy.schemas import ApiKeyCreated
from app.webhooks.adapters.base import EndpointConfig
from app.webhooks.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from tests.helpers import create_api_key

SECRET = "hygiene-webhook-secret-3a9f1c"
ROTATED_SECRET = "hygiene-rotated-secret-77d2e0"
API_TOKEN = "hygiene-platform-api-token-51b8"
URL_TOKEN = "hygiene-url-token-0c4d"
EMAIL = "private.person@hygiene.example"
COMMENT = "hygiene comment that names a colleague"


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event logged during the test, as the event dicts renderers get."""
    with capture_logs() as captured:
        yield cast(list[dict[str, Any]], captured)


def logged_text(logs: list[dict[str, Any]]) -> str:
    return "\n".join(repr(entry) for entry in logs)


def typeform_body(token: str) -> bytes:
    payload = {
        "event_id": token,
        "event_type": "form_response",
        "form_response": {
            "token": token,
            "submitted_at": "2026-02-12T10:00:00Z",
            "hidden": {"account_id": "ACME-1", "email": EMAIL},
            "answers": [
                {"type": "number", "number": 3, "field": {"type": "nps", "ref": "nps"}},
                {"type": "email", "email": EMAIL, "field": {"type": "email", "ref": "mail"}},
                {"type": "text", "text": COMMENT, "field": {"type": "long_text", "ref": "why"}},
            ],
        },
    }
    return json.dumps(payload).encode()


def typeform_signature(body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


class TestSecretsStayOut:
    async def test_key_creation_logs_no_key(
        self, api: httpx.AsyncClient, api_key: str, logs: list[dict[str, Any]]
    ) -> None:
        key = await create_api_key(api, "read", name="hygiene")
        listed = await api.get("/v1/api-keys")

        assert key not in logged_text(logs)
        assert api_key not in logged_text(logs)
        assert key not in listed.text

    async def test_bad_key_not_echoed(
        self, client: httpx.AsyncClient, api_key: str, logs: list[dict[str, Any]]
    ) -> None:
        bad_key = api_key[:-4] + "AAAA"

        response = await client.get("/v1/tenant", headers={"Authorization": f"Bearer {bad_key}"})

        assert response.status_code == 401
        assert bad_key not in response.text
        assert bad_key not in logged_text(logs)
        assert bad_key[-20:] not in logged_text(logs)

    async def test_endpoint_secrets_not_logged(
        self, api: httpx.AsyncClient, logs: list[dict[str, Any]]
    ) -> None:
        created = await api.post(
            "/v1/webhook-endpoints",
            json={"source": "typeform", "secret": SECRET, "token": URL_TOKEN},
        )
        endpoint_id = created.json()["id"]
        patched = await api.patch(
            f"/v1/webhook-endpoints/{endpoint_id}",
            json={"secrets": [SECRET, ROTATED_SECRET], "api_token": API_TOKEN},
        )
        read = await api.get(f"/v1/webhook-endpoints/{endpoint_id}")
        listed = await api.get("/v1/webhook-endpoints")
        invalid = await api.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"secrets": [SECRET[:5]]}
        )

        assert created.status_code == 201, created.text
        assert patched.status_code == 200, patched.text
        assert invalid.status_code == 422, invalid.text
        for secret in (SECRET, ROTATED_SECRET, API_TOKEN, URL_TOKEN):
            assert secret not in logged_text(logs)
            assert secret not in patched.text
            assert secret not in read.text
            assert secret not in listed.text
        assert SECRET[:5] not in invalid.text

    async def test_wrong_signature_reveals_nothing(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, logs: list[dict[str, Any]]
    ) -> None:
        created = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET}
        )
        endpoint_id = created.json()["id"]
        body = typeform_body("hygiene-token")
        expected = typeform_signature(body, SECRET)
        sent = typeform_signature(body, ROTATED_SECRET)

        response = await client.post(
            f"/v1/webhooks/{endpoint_id}",
            content=body,
            headers={"content-type": "application/json", "typeform-signature": sent},
        )

        assert response.status_code == 401, response.text
        for value in (SECRET, expected, sent, EMAIL, COMMENT):
            assert value not in response.text
            assert value not in logged_text(logs)

    def test_reprs_hide_secrets(self) -> None:
        objects = [
            WebhookEndpointCreate(source="typeform", secret=SECRET, token=URL_TOKEN),
            WebhookEndpointUpdate(secrets=[SECRET, ROTATED_SECRET], api_token=API_TOKEN),
            EndpointConfig(
                source="typeform",
                secrets=(SECRET,),
                account_field="account_id",
                token=URL_TOKEN,
                api_token=API_TOKEN,
            ),
        ]

        for item in objects:
            for secret in (SECRET, ROTATED_SECRET, API_TOKEN, URL_TOKEN):
                assert secret not in repr(item)
                assert secret not in str(item)

    async def test_created_key_repr_hides_key(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/v1/api-keys", json={"name": "repr", "scopes": ["read"]})
        created = ApiKeyCreated.model_validate(response.json())

        assert created.api_key not in repr(created)
        assert created.api_key not in str(created)


class TestPersonalDataStaysOut:
    async def test_responses_log_no_email_or_comment(
        self, app: FastAPI, api: httpx.AsyncClient, logs: list[dict[str, Any]]
    ) -> None:
        created = await api.post(
            "/v1/webhook-endpoints",
            json={"source": "typeform", "secret": SECRET, "score_field": "nps"},
        )
        endpoint_id = created.json()["id"]
        body = typeform_body("hygiene-token-2")
        headers = {
            "content-type": "application/json",
            "typeform-signature": typeform_signature(body, SECRET),
        }

        posted = await api.post(
            "/v1/responses",
            json={
                "responses": [
                    {
                        "source": "native",
                        "response_id": "hygiene-1",
                        "email": EMAIL,
                        "comment": COMMENT,
                        "score": 4,
                        "submitted_at": "2026-02-01T00:00:00Z",
                    }
                ]
            },
        )
        delivered = await api.post(f"/v1/webhooks/{endpoint_id}", content=body, headers=headers)
        contact = await api.put(f"/v1/contacts/{EMAIL}", json={"account_external_id": "NONE"})
        missing = await api.get(f"/v1/contacts/{EMAIL}")
        erased = await api.post("/v1/privacy/erase", json={"email": EMAIL})

        assert posted.status_code == 200, posted.text
        assert delivered.json()["status"] == "processed", delivered.text
        assert contact.status_code == 404, contact.text
        assert missing.status_code == 404, missing.text
        assert erased.status_code == 200, erased.text
        assert EMAIL not in logged_text(logs)
        assert EMAIL.split("@")[0] not in logged_text(logs)
        assert COMMENT not in logged_text(logs)
        assert logs, "nothing was captured"

    async def test_mapping_failure_logs_no_payload_value(
        self, api: httpx.AsyncClient, logs: list[dict[str, Any]]
    ) -> None:
        created = await api.post(
            "/v1/webhook-endpoints",
            json={"source": "typeform", "secret": SECRET, "score_field": "nps"},
        )
        endpoint_id = created.json()["id"]
        bodies = [
            typeform_body("hygiene-token-3").replace(b"2026-02-12T10:00:00Z", EMAIL.encode()),
            typeform_body("hygiene-token-4").replace(
                b'"number": 3', f'"number": "{EMAIL}"'.encode()
            ),
        ]

        acks = []
        for body in bodies:
            headers = {
                "content-type": "application/json",
                "typeform-signature": typeform_signature(body, SECRET),
            }
            response = await api.post(f"/v1/webhooks/{endpoint_id}", content=body, headers=headers)
            acks.append(response.json())

        # The tenant reads the whole reason from the acknowledgement; the log names the field.
        assert [ack["status"] for ack in acks] == ["failed", "failed"]
        assert EMAIL in acks[0]["detail"]
        failures = [entry for entry in logs if entry["event"] == "webhook.mapping_failed"]
        assert [entry["reason"] for entry in failures] == [
            "form_response.submitted_at is not a timestamp",
            "the NPS answer is invalid",
        ]
        assert EMAIL.split("@")[0] not in logged_text(logs)

    @pytest.mark.parametrize(
        "account_id",
        [EMAIL, "zed@localhost", '"zed.q"@corp.example', "zed@[10.0.0.1]", "zed%40corp.example"],
    )
    async def test_email_like_account_id_masked_in_logs(
        self, api: httpx.AsyncClient, logs: list[dict[str, Any]], account_id: str
    ) -> None:
        # An account's external id can be an email address, in any of its forms.
        missing = await api.get(f"/v1/accounts/{quote(account_id, safe='@')}")
        not_allowed = await api.delete(f"/v1/accounts/{quote(account_id, safe='@')}")

        problem = missing.json()
        assert missing.status_code == 404, missing.text
        assert not_allowed.status_code == 405, not_allowed.text
        assert account_id in problem["detail"]
        rejected = [entry for entry in logs if entry["event"] == "request.rejected"]
        assert rejected[0]["detail"] == "No account with external id [email]"
        assert account_id.split("@")[0].split("%40")[0] not in logged_text(logs)


class TestEndpointIdsStayOut:
    async def test_logs_carry_a_prefix_only(
        self, api: httpx.AsyncClient, logs: list[dict[str, Any]]
    ) -> None:
        # For platforms that sign nothing, the endpoint id is the webhook URL's only secret.
        created = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET}
        )
        endpoint_id = created.json()["id"]
        body = typeform_body("hygiene-token-5")
        headers = {
            "content-type": "application/json",
            "typeform-signature": typeform_signature(body, SECRET),
        }
        delivered = await api.post(f"/v1/webhooks/{endpoint_id}", content=body, headers=headers)
        patched = await api.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"score_field": "nps"}
        )

        assert created.status_code == 201, created.text
        assert delivered.status_code == 200, delivered.text
        assert patched.status_code == 200, patched.text
        events = {entry["event"] for entry in logs}
        assert {"webhook_endpoint.created", "webhook.received"} <= events
        assert "webhook_endpoint.updated" in events
        assert endpoint_id not in logged_text(logs)
        assert endpoint_id[:-24] + "..." in logged_text(logs)
