"""Deleting responses and erasing a person's data, and the audit log of both."""

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.db.session import session_scope
from app.privacy.models import AuditEvent
from app.webhooks.models import WebhookDelivery
from tests.factories import coverage, get_response, post_responses, put_account, put_contact
from tests.webhook_samples import create_endpoint, load_sample, post_delivery

TYPEFORM = load_sample("typeform-form_response")
SECRET = TYPEFORM.signature["test_secret"]
DANA = TYPEFORM.expected["email"]


def _signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return _signed_body(json.dumps(payload).encode())


def _signed_body(body: bytes) -> tuple[bytes, dict[str, str]]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    signature = "sha256=" + base64.b64encode(digest).decode()
    return body, {"Content-Type": "application/json", "Typeform-Signature": signature}


def _other_person(payload: dict[str, Any]) -> dict[str, Any]:
    """The sample payload as another person's response, with a new event id and token."""
    text = json.dumps(payload).replace(DANA, "lee@example.com")
    other: dict[str, Any] = json.loads(text)
    other["event_id"] = "evt-lee"
    other["form_response"]["token"] = "token-lee"
    return other


async def _deliveries(app: FastAPI, endpoint_id: str) -> dict[int, WebhookDelivery]:
    async with session_scope(app.state.sessionmaker) as session:
        rows = await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        )
        return {delivery.id: delivery for delivery in rows}


async def _audit_events(app: FastAPI, tenant_id: Any) -> list[AuditEvent]:
    async with session_scope(app.state.sessionmaker) as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.tenant_id == tenant_id).order_by(AuditEvent.id)
        )
        return list(rows)


async def _tenant_id(api: httpx.AsyncClient) -> str:
    tenant = await api.get("/v1/tenant")
    tenant_id: str = tenant.json()["id"]
    return tenant_id


async def test_delete_removes_response(api: httpx.AsyncClient) -> None:
    await post_responses(api, {"response_id": "r1", "score": 9})

    deleted = await api.delete("/v1/responses/test/r1")
    read = await api.get("/v1/responses/test/r1")
    again = await api.delete("/v1/responses/test/r1")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "content-type" not in deleted.headers
    assert read.status_code == 404
    assert again.status_code == 404
    assert again.json()["type"] == "urn:revcov:problem:response-not-found"


async def test_delete_changes_coverage(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", amount="600.00")
    await put_account(api, "globex", amount="400.00")
    await post_responses(
        api,
        {"response_id": "r1", "account_external_id": "acme", "score": 9},
        {"response_id": "r2", "account_external_id": "globex", "score": 2},
    )
    before = await coverage(api)

    await api.delete("/v1/responses/test/r2")
    after = await coverage(api)

    assert before["covered_revenue"] == "1000.00"
    assert before["responses"]["scored"] == 2
    assert after["covered_revenue"] == "600.00"
    assert after["buckets"]["at_risk"]["accounts"] == 0
    assert after["responses"]["scored"] == 1


async def test_delete_uncovers_account_in_closed_period(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", effective_at="2025-01-01T00:00:00Z")
    await post_responses(
        api,
        {
            "response_id": "old",
            "account_external_id": "acme",
            "score": 9,
            "submitted_at": "2025-05-01T00:00:00Z",
        },
    )

    before = await api.get("/v1/coverage", params={"period": "2025-Q2"})
    await api.delete("/v1/responses/test/old")
    after = await api.get("/v1/coverage", params={"period": "2025-Q2"})

    assert before.json()["accounts"]["covered"] == 1
    assert after.json()["accounts"]["covered"] == 0
    assert after.json()["covered_revenue"] == "0.00"
    assert after.json()["responses"]["scored"] == 0


async def test_delete_recorded_in_audit_log(api: httpx.AsyncClient, app: FastAPI) -> None:
    await post_responses(api, {"response_id": "r1", "score": 9, "email": "jane@acme.com"})

    await api.delete("/v1/responses/test/r1")
    events = await _audit_events(app, await _tenant_id(api))
    listed = await api.get("/v1/audit-events")

    assert [event.action for event in events] == ["response.deleted"]
    assert events[0].source == "test"
    assert events[0].response_id == "r1"
    assert events[0].counts == {"responses": 1}
    assert events[0].subject_hash is None
    assert listed.json()["items"][0]["response_id"] == "r1"


async def test_delete_other_tenant_404(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient
) -> None:
    await post_responses(api, {"response_id": "r1", "score": 9})

    deleted = await other_api.delete("/v1/responses/test/r1")
    still_there = await api.get("/v1/responses/test/r1")
    audit = await other_api.get("/v1/audit-events")

    assert deleted.status_code == 404
    assert still_there.status_code == 200
    assert audit.json()["items"] == []


async def test_erase_keeps_score_and_coverage(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await post_responses(
        api,
        {"response_id": "r1", "email": "Jane@Acme.com", "score": 3, "comment": "too slow"},
        {"response_id": "r2", "email": "joe@acme.com", "score": 9, "comment": "fine"},
    )
    before = await coverage(api)

    erased = await api.post("/v1/privacy/erase", json={"email": " jane@ACME.com"})
    jane = await get_response(api, "r1")
    joe = await get_response(api, "r2")
    after = await coverage(api)

    assert erased.status_code == 200, erased.text
    assert erased.json()["responses"] == 1
    assert jane["email"] is None
    assert jane["comment"] is None
    assert jane["score"] == 3
    assert jane["account_external_id"] == "acme"
    assert jane["erased_at"] is not None
    assert joe["email"] == "joe@acme.com"
    assert joe["comment"] == "fine"
    assert after == before


async def test_erase_removes_contact(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")
    await put_contact(api, "jane@acme.com", "globex")
    await put_contact(api, "joe@acme.com", "acme")

    erased = await api.post("/v1/privacy/erase", json={"email": "JANE@acme.com"})
    jane = await api.get("/v1/contacts/jane@acme.com")
    joe = await api.get("/v1/contacts/joe@acme.com")

    assert erased.json()["contact_links"] == 2
    assert jane.status_code == 404
    assert joe.status_code == 200


async def test_erased_match_survives_contact_removal(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@gmail.com", "acme")
    await post_responses(api, {"response_id": "r1", "email": "jane@gmail.com", "score": 9})
    before = await coverage(api)

    await api.post("/v1/privacy/erase", json={"email": "jane@gmail.com"})
    stored = await get_response(api, "r1")
    after = await coverage(api)

    assert stored["account_external_id"] == "acme"
    assert stored["matched_by"] == "contact"
    assert after["covered_revenue"] == before["covered_revenue"] == "1000.00"


async def test_erase_empties_webhook_payloads(
    api: httpx.AsyncClient, client: httpx.AsyncClient, app: FastAPI
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    payload = json.loads(TYPEFORM.body)
    unmappable = json.loads(TYPEFORM.body)
    unmappable["event_id"] = "evt-unmappable"
    unmappable["form_response"]["submitted_at"] = "yesterday"

    processed = await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)
    failed = await post_delivery(client, endpoint["id"], *_signed(unmappable))
    other = await post_delivery(client, endpoint["id"], *_signed(_other_person(payload)))
    erased = await api.post("/v1/privacy/erase", json={"email": DANA.upper()})
    deliveries = await _deliveries(app, endpoint["id"])

    assert [ack.json()["status"] for ack in (processed, failed, other)] == [
        "processed",
        "failed",
        "processed",
    ]
    assert erased.json()["webhook_deliveries"] == 2
    for ack in (processed, failed):
        delivery = deliveries[ack.json()["delivery_id"]]
        assert delivery.body == b""
        assert delivery.headers == {}
        assert delivery.erased_at is not None
    unrelated = deliveries[other.json()["delivery_id"]]
    assert b"lee@example.com" in unrelated.body
    assert unrelated.headers != {}
    assert unrelated.erased_at is None


async def test_erase_keeps_webhook_response_counted(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await put_account(api, TYPEFORM.expected["account_external_id"])
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)
    before = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    await api.post("/v1/privacy/erase", json={"email": DANA})
    stored = await api.get(f"/v1/responses/typeform/{TYPEFORM.expected['response_id']}")
    after = await api.get("/v1/coverage", params={"period": "2026-Q1"})

    assert before.json()["covered_revenue"] == "1000.00"
    assert after.json() == before.json()
    assert stored.json()["email"] is None
    assert stored.json()["comment"] is None
    assert stored.json()["score"] == TYPEFORM.expected["score"]


async def test_erase_audit_holds_no_email(api: httpx.AsyncClient, app: FastAPI) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "comment": "hi"})

    erased = await api.post("/v1/privacy/erase", json={"email": "Jane@Acme.com"})
    events = await _audit_events(app, await _tenant_id(api))
    listed = await api.get("/v1/audit-events")

    assert len(events) == 1
    event = events[0]
    assert event.action == "person.erased"
    assert event.subject_hash == hashlib.sha256(b"jane@acme.com").digest()
    assert event.counts == {"responses": 1, "webhook_deliveries": 0, "contact_links": 1}
    assert event.id == erased.json()["audit_event_id"]
    stored_values = [event.action, event.source, event.response_id, event.counts]
    assert "jane" not in repr(stored_values).lower()
    assert "jane" not in listed.text.lower()
    assert listed.json()["items"][0]["subject_sha256"] == event.subject_hash.hex()


async def test_erase_unknown_email_counts_zero(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/privacy/erase", json={"email": "nobody@acme.com"})

    assert response.status_code == 200, response.text
    assert response.json()["responses"] == 0
    assert response.json()["webhook_deliveries"] == 0
    assert response.json()["contact_links"] == 0


async def test_erase_invalid_email_422(api: httpx.AsyncClient) -> None:
    missing = await api.post("/v1/privacy/erase", json={})
    invalid = await api.post("/v1/privacy/erase", json={"email": "dana at example.org"})

    assert missing.status_code == 422
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["location"] == "body.email"
    assert "dana" not in invalid.text


async def test_erase_stays_within_tenant(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient
) -> None:
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})

    erased = await other_api.post("/v1/privacy/erase", json={"email": "jane@acme.com"})
    stored = await get_response(api, "r1")

    assert erased.json()["responses"] == 0
    assert stored["email"] == "jane@acme.com"


async def test_newer_version_after_erasure_stored(api: httpx.AsyncClient) -> None:
    await post_responses(
        api,
        {
            "response_id": "r1",
            "email": "jane@acme.com",
            "score": 3,
            "updated_at": "2026-02-10T12:00:00Z",
        },
    )
    await api.post("/v1/privacy/erase", json={"email": "jane@acme.com"})

    await post_responses(
        api,
        {
            "response_id": "r1",
            "email": "jane@acme.com",
            "score": 4,
            "updated_at": "2026-02-11T12:00:00Z",
        },
    )
    stored = await get_response(api, "r1")

    assert stored["email"] == "jane@acme.com"
    assert stored["score"] == 4
    assert stored["erased_at"] is None


async def test_erase_finds_json_escaped_email(
    api: httpx.AsyncClient, client: httpx.AsyncClient, app: FastAPI
) -> None:
    # The dot of the address written as a JSON escape, in a delivery that failed to map.
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    unmappable = json.loads(TYPEFORM.body)
    unmappable["event_id"] = "evt-escaped"
    unmappable["form_response"]["submitted_at"] = "yesterday"
    body = json.dumps(unmappable).replace(DANA, DANA.replace(".", "\\u002e")).encode()
    ack = await post_delivery(client, endpoint["id"], *_signed_body(body))

    erased = await api.post("/v1/privacy/erase", json={"email": DANA})

    delivery = (await _deliveries(app, endpoint["id"]))[ack.json()["delivery_id"]]
    assert DANA.encode() not in body
    assert erased.json()["webhook_deliveries"] == 1
    assert delivery.body == b""


async def test_erase_reads_past_deeply_nested_body(
    api: httpx.AsyncClient, client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Casting the deep body to jsonb exceeds PostgreSQL's default stack depth (2 MB).
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    other = json.dumps(_other_person(json.loads(TYPEFORM.body))).encode()
    depth = 20_000
    deep_body = b'{"deep": ' + b"[" * depth + b"]" * depth + b", " + other[1:]
    deep = await post_delivery(client, endpoint["id"], *_signed_body(deep_body))
    processed = await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)

    erased = await api.post("/v1/privacy/erase", json={"email": DANA})

    deliveries = await _deliveries(app, endpoint["id"])
    assert deep.json()["status"] == "failed"
    assert erased.status_code == 200, erased.text
    assert erased.json()["webhook_deliveries"] == 1
    assert deliveries[processed.json()["delivery_id"]].body == b""
    assert deliveries[deep.json()["delivery_id"]].body == deep_body


async def test_replay_after_erasure_keeps_data_out(
    api: httpx.AsyncClient, client: httpx.AsyncClient, app: FastAPI
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    ack = await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)
    delivery_id = ack.json()["delivery_id"]
    await api.post("/v1/privacy/erase", json={"email": DANA})
    # Put the body back, as for a body in an encoding that the erasure search does not read.
    restore = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(body=TYPEFORM.body, erased_at=None)
    )
    async with session_scope(app.state.sessionmaker) as session:
        await session.execute(restore)

    replayed = await api.post(f"/v1/webhook-deliveries/{delivery_id}/replay")

    stored = await api.get(f"/v1/responses/typeform/{TYPEFORM.expected['response_id']}")
    assert replayed.status_code == 200, replayed.text
    assert (stored.json()["email"], stored.json()["comment"]) == (None, None)


async def test_unversioned_copy_keeps_erasure(api: httpx.AsyncClient) -> None:
    item = {
        "response_id": "r-erased",
        "email": "erin@priv.example",
        "comment": "private words",
        "score": 4,
        "submitted_at": "2026-02-01T12:00:00Z",
    }
    await post_responses(api, item)
    await api.post("/v1/privacy/erase", json={"email": "erin@priv.example"})

    again = await api.post("/v1/responses", json={"responses": [{"source": "test", **item}]})

    stored = await get_response(api, "r-erased")
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 1}
    assert (stored["email"], stored["comment"]) == (None, None)
