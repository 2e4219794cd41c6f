"""Typeform `form_response` webhooks, driven by the recorded sample and signed variants of it.

The sample's bytes are never edited, because its signature covers every byte. Variants are
built from the parsed sample, given their own event id and token, and signed here with the
sample's test secret.
"""

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.db.session import session_scope
from app.webhooks.adapters.base import EndpointConfig, InboundDelivery
from app.webhooks.adapters.typeform import TypeformAdapter
from app.webhooks.models import WebhookDelivery
from tests.helpers import add_account, assert_problem, coverage_q1

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SAMPLE_BODY = (FIXTURES / "typeform-form_response.json").read_bytes()
SAMPLE_META = json.loads((FIXTURES / "typeform-form_response.meta.json").read_text())
SECRET: str = SAMPLE_META["signature"]["test_secret"]
SAMPLE_SIGNATURE: str = SAMPLE_META["headers"]["Typeform-Signature"]
EXPECTED: dict[str, Any] = SAMPLE_META["expected"]
SAMPLE_TOKEN: str = EXPECTED["response_id"]

MAX_BODY_BYTES = 256 * 1024


def sign(body: bytes, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def variant(token: str, change: Callable[[dict[str, Any]], None] | None = None) -> bytes:
    """The sample with its own event id and token, changed by `change`, as compact JSON."""
    payload = copy.deepcopy(json.loads(SAMPLE_BODY))
    payload["event_id"] = token
    payload["form_response"]["token"] = token
    if change is not None:
        change(payload)
    return json.dumps(payload).encode()


def answers_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = payload["form_response"]["answers"]
    return answers


def drop_answers(payload: dict[str, Any], answer_type: str) -> None:
    form_response = payload["form_response"]
    form_response["answers"] = [
        answer for answer in form_response["answers"] if answer["type"] != answer_type
    ]


async def deliver(
    client: httpx.AsyncClient,
    endpoint_id: str,
    body: bytes,
    signature: str | None = "sign",
) -> httpx.Response:
    """POST `body` to the endpoint; `signature="sign"` signs it with the test secret."""
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        headers["Typeform-Signature"] = signature
    return await client.post(f"/v1/webhooks/{endpoint_id}", content=body, headers=headers)


async def create_endpoint(api: httpx.AsyncClient, **settings: str) -> dict[str, Any]:
    response = await api.post(
        "/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET, **settings}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored_response(api: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await api.get(f"/v1/responses/typeform/{token}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def assert_not_stored(api: httpx.AsyncClient, token: str) -> None:
    response = await api.get(f"/v1/responses/typeform/{token}")
    assert response.status_code == 404, response.text
    listed = await api.get("/v1/responses")
    assert listed.json()["items"] == []


def new_token() -> str:
    return uuid.uuid4().hex.upper()


@pytest.fixture
async def endpoint_id(api: httpx.AsyncClient) -> str:
    endpoint = await create_endpoint(api)
    return str(endpoint["id"])


class TestRecordedSample:
    def test_fixture_is_unchanged(self) -> None:
        assert hashlib.sha256(SAMPLE_BODY).hexdigest() == SAMPLE_META["body_sha256_hex"]
        assert len(SAMPLE_BODY) == SAMPLE_META["body_length_bytes"]

    def test_signing_matches_recording(self) -> None:
        assert sign(SAMPLE_BODY) == SAMPLE_SIGNATURE

    async def test_good_signature_stored(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        await add_account(api, "ACME-001", "250000.00")

        response = await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "processed"
        stored = await stored_response(api, SAMPLE_TOKEN)
        assert stored["source"] == "typeform"
        assert stored["response_id"] == EXPECTED["response_id"]
        assert stored["score"] == EXPECTED["score"]
        assert stored["comment"] == EXPECTED["comment"]
        assert stored["email"] == EXPECTED["email"]
        assert stored["account_external_id"] == EXPECTED["account_external_id"]
        submitted_at = datetime.fromisoformat(stored["submitted_at"])
        assert submitted_at == datetime.fromisoformat(EXPECTED["submitted_at"])

    async def test_calculated_score_not_used(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        # The sample's `calculated.score` and `variables[score]` are both 0.
        await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        stored = await stored_response(api, SAMPLE_TOKEN)

        assert stored["score"] == 9

    async def test_moves_account_to_safe(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        await add_account(api, "ACME-001", "250000.00")
        await add_account(api, "OTHER-1", "750000.00")
        before = await coverage_q1(api)

        await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        after = await coverage_q1(api)
        assert before["buckets"]["unaccounted"]["revenue"] == "1000000.00"
        assert before["buckets"]["safe"]["revenue"] == "0.00"
        assert after["buckets"]["unaccounted"]["revenue"] == "750000.00"
        assert after["buckets"]["safe"]["revenue"] == "250000.00"
        assert after["buckets"]["safe"]["accounts"] == 1
        assert after["covered_revenue"] == "250000.00"
        assert after["coverage"] == 0.25

    async def test_duplicate_changes_nothing(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        await add_account(api, "ACME-001", "250000.00")
        await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)
        stored_before = await stored_response(api, SAMPLE_TOKEN)
        coverage_before = await coverage_q1(api)

        response = await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "duplicate"
        assert await stored_response(api, SAMPLE_TOKEN) == stored_before
        assert await coverage_q1(api) == coverage_before

    async def test_raw_body_kept(
        self, app: FastAPI, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        response = await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        delivery_id = response.json()["delivery_id"]
        async with session_scope(app.state.sessionmaker) as session:
            body = await session.scalar(
                select(WebhookDelivery.body).where(WebhookDelivery.id == delivery_id)
            )
        assert body == SAMPLE_BODY


class TestSignature:
    async def test_wrong_secret_rejected(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        signature = sign(SAMPLE_BODY, "another_secret_value_1234")

        response = await deliver(client, endpoint_id, SAMPLE_BODY, signature)

        assert_problem(response, 401)
        await assert_not_stored(api, SAMPLE_TOKEN)

    async def test_missing_signature_rejected(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        response = await deliver(client, endpoint_id, SAMPLE_BODY, None)

        assert_problem(response, 401)
        await assert_not_stored(api, SAMPLE_TOKEN)

    async def test_one_byte_changed_rejected(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        changed = SAMPLE_BODY.replace(b"ACME-001", b"ACME-002")
        assert len(changed) == len(SAMPLE_BODY)
        assert sum(a != b for a, b in zip(changed, SAMPLE_BODY, strict=True)) == 1

        response = await deliver(client, endpoint_id, changed, SAMPLE_SIGNATURE)

        assert_problem(response, 401)
        await assert_not_stored(api, SAMPLE_TOKEN)

    async def test_reserialised_body_rejected(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        # The JSON value is the same and only the whitespace differs, but the signature
        # covers the bytes.
        compact = json.dumps(json.loads(SAMPLE_BODY), separators=(",", ":")).encode()

        response = await deliver(client, endpoint_id, compact, SAMPLE_SIGNATURE)

        assert_problem(response, 401)
        await assert_not_stored(api, SAMPLE_TOKEN)

    @pytest.mark.parametrize(
        "signature",
        [
            SAMPLE_SIGNATURE.removeprefix("sha256="),
            "sha256=" + hmac.new(SECRET.encode(), SAMPLE_BODY, hashlib.sha256).hexdigest(),
            "sha1=" + SAMPLE_SIGNATURE.removeprefix("sha256="),
            "",
            SAMPLE_SIGNATURE + "x",
        ],
    )
    async def test_malformed_signature_rejected(
        self,
        api: httpx.AsyncClient,
        client: httpx.AsyncClient,
        endpoint_id: str,
        signature: str,
    ) -> None:
        response = await deliver(client, endpoint_id, SAMPLE_BODY, signature)

        assert_problem(response, 401)
        await assert_not_stored(api, SAMPLE_TOKEN)

    async def test_signed_variant_accepted(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        token = new_token()

        response = await deliver(client, endpoint_id, variant(token))

        assert response.status_code == 200, response.text
        assert (await stored_response(api, token))["score"] == 9


class TestReceive:
    @pytest.mark.parametrize(
        "endpoint_id",
        ["nope", f"wh_{uuid.uuid4().hex}_{uuid.uuid4().hex}", "wh_not_hex"],
    )
    async def test_unknown_endpoint_is_404(
        self, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        response = await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        assert_problem(response, 404)

    async def test_body_over_limit_is_413(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        token = new_token()

        def pad(payload: dict[str, Any]) -> None:
            answers_of(payload)[1]["text"] = "x" * MAX_BODY_BYTES

        body = variant(token, pad)
        assert len(body) > MAX_BODY_BYTES

        response = await deliver(client, endpoint_id, body)

        assert_problem(response, 413)
        await assert_not_stored(api, token)

    async def test_streamed_body_over_limit_is_413(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        # Sent in chunks without Content-Length, so the size is only known while reading.
        token = new_token()

        def pad(payload: dict[str, Any]) -> None:
            answers_of(payload)[1]["text"] = "x" * MAX_BODY_BYTES

        body = variant(token, pad)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 64 * 1024):
                yield body[start : start + 64 * 1024]

        response = await client.post(
            f"/v1/webhooks/{endpoint_id}",
            content=chunks(),
            headers={"Content-Type": "application/json", "Typeform-Signature": sign(body)},
        )

        assert "content-length" not in response.request.headers
        assert_problem(response, 413)
        await assert_not_stored(api, token)

    async def test_body_at_limit_accepted(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        token = new_token()
        filler = ""

        def pad(payload: dict[str, Any]) -> None:
            answers_of(payload)[1]["text"] = filler

        filler = "y" * (MAX_BODY_BYTES - len(variant(token, pad)))
        body = variant(token, pad)
        assert len(body) == MAX_BODY_BYTES

        response = await deliver(client, endpoint_id, body)

        assert response.status_code == 200, response.text
        assert (await stored_response(api, token))["comment"] == filler

    async def test_long_comment_untruncated(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        token = new_token()
        comment = "Exports are slow. " * 11_111 + "Fix — please"
        assert len(comment) == 200_010

        def set_comment(payload: dict[str, Any]) -> None:
            answers_of(payload)[1]["text"] = comment

        body = variant(token, set_comment)
        assert len(body) < MAX_BODY_BYTES

        response = await deliver(client, endpoint_id, body)

        assert response.status_code == 200, response.text
        assert (await stored_response(api, token))["comment"] == comment

    async def test_no_nps_answer_stores_null(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        # The sample's `calculated.score` of 0 stays in the payload and must not be used.
        await add_account(api, "ACME-001", "250000.00")
        token = new_token()
        body = variant(token, lambda payload: drop_answers(payload, "number"))

        response = await deliver(client, endpoint_id, body)

        assert response.status_code == 200, response.text
        stored = await stored_response(api, token)
        assert stored["score"] is None
        assert stored["comment"] == EXPECTED["comment"]
        coverage = await coverage_q1(api)
        assert coverage["responses"]["scored"] == 0
        assert coverage["buckets"]["unaccounted"]["accounts"] == 1

    async def test_nul_in_comment_not_500(
        self, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        # PostgreSQL text cannot hold U+0000. A 5xx would make Typeform retry the same
        # bytes without end, so the service must return a 2xx or 4xx for this delivery.
        token = new_token()

        def set_comment(payload: dict[str, Any]) -> None:
            answers_of(payload)[1]["text"] = "bad\u0000byte"

        response = await deliver(client, endpoint_id, variant(token, set_comment))

        assert response.status_code < 500, response.text

    async def test_numeric_submitted_at_fails(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        token = new_token()

        def set_number(payload: dict[str, Any]) -> None:
            payload["form_response"]["submitted_at"] = 123

        response = await deliver(client, endpoint_id, variant(token, set_number))

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "failed"
        assert "not an ISO 8601 string" in response.json()["detail"]
        await assert_not_stored(api, token)

    async def test_unknown_account_unmatched(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        response = await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        assert response.status_code == 200, response.text
        assert (await stored_response(api, SAMPLE_TOKEN))["account_external_id"] is None
        assert (await coverage_q1(api))["responses"]["unmatched"] == 1

    async def test_account_created_later_matches(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        await deliver(client, endpoint_id, SAMPLE_BODY, SAMPLE_SIGNATURE)

        await add_account(api, "ACME-001", "250000.00")

        assert (await stored_response(api, SAMPLE_TOKEN))["account_external_id"] == "ACME-001"
        coverage = await coverage_q1(api)
        assert coverage["responses"]["unmatched"] == 0
        assert coverage["buckets"]["safe"]["revenue"] == "250000.00"

    async def test_email_from_hidden_field(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        token = new_token()

        def use_hidden_email(payload: dict[str, Any]) -> None:
            drop_answers(payload, "email")
            payload["form_response"]["hidden"]["email"] = "lee@example.com"

        await deliver(client, endpoint_id, variant(token, use_hidden_email))

        assert (await stored_response(api, token))["email"] == "lee@example.com"

    async def test_no_email_stores_null(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, endpoint_id: str
    ) -> None:
        # The sample's hidden `user_email` is not the `email` hidden field.
        token = new_token()

        await deliver(client, endpoint_id, variant(token, lambda p: drop_answers(p, "email")))

        assert (await stored_response(api, token))["email"] is None


class TestAdapter:
    def test_key_and_map_parse_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        event_id = json.loads(SAMPLE_BODY)["event_id"]
        parsed: list[bytes] = []
        loads = json.loads

        def counting_loads(document: bytes, **options: Any) -> Any:
            parsed.append(document)
            return loads(document, **options)

        monkeypatch.setattr(json, "loads", counting_loads)
        adapter = TypeformAdapter()
        delivery = InboundDelivery(body=SAMPLE_BODY, headers={}, received_at=datetime.now(UTC))
        config = EndpointConfig(source="typeform", secrets=(SECRET,), account_field="account_id")

        key = adapter.delivery_key(delivery)
        mapped = adapter.map(delivery, config)

        assert key == event_id
        assert mapped.response is not None
        assert mapped.response.response_id == SAMPLE_TOKEN
        assert parsed == [SAMPLE_BODY]


def add_answer(payload: dict[str, Any], answer: dict[str, Any]) -> None:
    answers_of(payload).insert(0, answer)


EASE_ANSWER = {
    "type": "number",
    "number": 3,
    "field": {"id": "Ez1", "type": "opinion_scale", "ref": "ease_score"},
}
FIRST_TEXT_ANSWER = {
    "type": "text",
    "text": "Onboarding went well.",
    "field": {"id": "Tx1", "type": "short_text", "ref": "onboarding"},
}


class TestEndpointSettings:
    async def test_default_takes_first_nps_answer(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        endpoint = await create_endpoint(api)
        token = new_token()

        await deliver(client, endpoint["id"], variant(token, lambda p: add_answer(p, EASE_ANSWER)))

        assert (await stored_response(api, token))["score"] == 3

    async def test_score_field_picks_answer(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        endpoint = await create_endpoint(api, score_field="nps_score")
        token = new_token()

        await deliver(client, endpoint["id"], variant(token, lambda p: add_answer(p, EASE_ANSWER)))

        assert (await stored_response(api, token))["score"] == 9

    async def test_score_field_absent_is_null(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        # With score_field set, the first opinion-scale answer is not a fallback.
        endpoint = await create_endpoint(api, score_field="missing_ref")
        token = new_token()

        await deliver(client, endpoint["id"], variant(token))

        assert (await stored_response(api, token))["score"] is None

    async def test_default_takes_first_text_answer(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        endpoint = await create_endpoint(api)
        token = new_token()
        body = variant(token, lambda p: add_answer(p, FIRST_TEXT_ANSWER))

        await deliver(client, endpoint["id"], body)

        assert (await stored_response(api, token))["comment"] == "Onboarding went well."

    async def test_comment_field_picks_answer(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        endpoint = await create_endpoint(api, comment_field="nps_reason")
        token = new_token()
        body = variant(token, lambda p: add_answer(p, FIRST_TEXT_ANSWER))

        await deliver(client, endpoint["id"], body)

        assert (await stored_response(api, token))["comment"] == EXPECTED["comment"]

    async def test_account_field_picks_hidden(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        await add_account(api, "ACME-002", "100.00")
        endpoint = await create_endpoint(api, account_field="company")
        token = new_token()

        def set_company(payload: dict[str, Any]) -> None:
            payload["form_response"]["hidden"]["company"] = "ACME-002"

        await deliver(client, endpoint["id"], variant(token, set_company))

        assert (await stored_response(api, token))["account_external_id"] == "ACME-002"

    async def test_settings_returned(self, api: httpx.AsyncClient) -> None:
        endpoint = await create_endpoint(
            api, score_field="nps_score", comment_field="nps_reason", account_field="company"
        )

        assert endpoint["score_field"] == "nps_score"
        assert endpoint["comment_field"] == "nps_reason"
        assert endpoint["account_field"] == "company"


class TestCreateEndpoint:
    async def test_created_shape(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET}
        )

        assert response.status_code == 201, response.text
        endpoint = response.json()
        assert {"id", "source", "url", "secret"} <= endpoint.keys()
        assert endpoint["source"] == "typeform"
        assert endpoint["secret"] == SECRET
        assert endpoint["url"].endswith(f"/v1/webhooks/{endpoint['id']}")

    async def test_generated_secret_verifies(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        created = await api.post("/v1/webhook-endpoints", json={"source": "typeform"})
        endpoint = created.json()
        token = new_token()
        body = variant(token)

        response = await deliver(client, endpoint["id"], body, sign(body, endpoint["secret"]))

        assert created.status_code == 201, created.text
        assert len(endpoint["secret"]) >= 16
        assert response.status_code == 200, response.text
        assert (await stored_response(api, token))["score"] == 9

    async def test_generated_secrets_differ(self, api: httpx.AsyncClient) -> None:
        first = await api.post("/v1/webhook-endpoints", json={"source": "typeform"})
        second = await api.post("/v1/webhook-endpoints", json={"source": "typeform"})

        assert first.json()["secret"] != second.json()["secret"]
        assert first.json()["id"] != second.json()["id"]

    @pytest.mark.parametrize("source", ["hotjar", "Typeform", ""])
    async def test_unknown_source_rejected(self, api: httpx.AsyncClient, source: str) -> None:
        response = await api.post("/v1/webhook-endpoints", json={"source": source})

        problem = assert_problem(response, 422)
        assert "typeform" in problem["detail"]

    async def test_unknown_field_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "signing_secret": SECRET}
        )

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["body.signing_secret"]
