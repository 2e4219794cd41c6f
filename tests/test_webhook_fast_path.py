"""The one-statement webhook path against the ORM path it replaces for processed deliveries.

Typeform deliveries take the fast path (`app.webhooks.ingest`); the same responses sent to
`POST /v1/responses` take the ORM path (`write_responses`). Both must match accounts with
the same rules and keep the same version and manual-assignment rules.
"""

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url, text

from app.db.session import session_scope
from app.responses.repository import RESOLUTION_LOCK_CLASS
from tests.factories import post_responses, put_account, put_contact
from tests.test_merges import merged
from tests.test_webhooks_typeform import create_endpoint, deliver, new_token, sign, variant

NEW_SECRET = "rotated-secret-0123456789"

# (account ref, email) of each case, named by the rule expected to decide it.
CASES: dict[str, tuple[str | None, str | None]] = {
    "named account": ("ACME", "someone@nowhere.example"),
    "named merged-away account": ("OLD", None),
    "unknown named account": ("NOPE", "pat@acme.example"),
    "contact of one account": (None, "Pat@Acme.example "),
    "contact of two accounts": (None, "shared@beta.example"),
    "domain of one account": (None, "lee@beta.example"),
    "domain of two accounts": (None, "kim@shared.example"),
    "no match": (None, "who@unknown.example"),
    "no email": (None, None),
}


def _typeform_body(token: str, account_ref: str | None, email: str | None) -> bytes:
    def change(payload: dict[str, Any]) -> None:
        form_response = payload["form_response"]
        form_response["hidden"] = {} if account_ref is None else {"account_id": account_ref}
        answers = [a for a in form_response["answers"] if a["type"] != "email"]
        if email is not None:
            answers.append({"type": "email", "email": email, "field": {"id": "m", "type": "email"}})
        form_response["answers"] = answers

    return variant(token, change)


async def _stored(app: FastAPI, source: str, response_id: str) -> dict[str, Any]:
    async with session_scope(app.state.sessionmaker) as session:
        row = (
            await session.execute(
                text(
                    "SELECT a.external_id AS account, r.matched_by, m.external_id AS merged_from "
                    "FROM responses AS r "
                    "LEFT JOIN accounts AS a "
                    "  ON a.tenant_id = r.tenant_id AND a.id = r.account_id "
                    "LEFT JOIN accounts AS m "
                    "  ON m.tenant_id = r.tenant_id AND m.id = r.merged_from_account_id "
                    "WHERE r.source = :source AND r.response_id = :response_id"
                ),
                {"source": source, "response_id": response_id},
            )
        ).one()
    return dict(row._mapping)


async def _load_accounts(api: httpx.AsyncClient) -> None:
    await put_account(api, "ACME", domains=["acme.example"])
    await put_account(api, "BETA", domains=["beta.example", "shared.example"])
    await put_account(api, "GAMMA", domains=["shared.example"])
    await put_account(api, "OLD")
    await merged(api, "OLD", into="ACME", effective_at="2026-01-15T00:00:00Z")
    for email, account in (
        ("pat@acme.example", "ACME"),
        ("shared@beta.example", "BETA"),
        ("shared@beta.example", "GAMMA"),
    ):
        response = await put_contact(api, email, account)
        assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize("case", sorted(CASES))
async def test_match_same_as_orm_path(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient, case: str
) -> None:
    await _load_accounts(api)
    endpoint = await create_endpoint(api)
    account_ref, email = CASES[case]
    token = new_token()

    delivered = await deliver(client, endpoint["id"], _typeform_body(token, account_ref, email))
    sent: dict[str, Any] = {"response_id": token, "score": 9}
    if account_ref is not None:
        sent["account_external_id"] = account_ref
    if email is not None:
        sent["email"] = email
    await post_responses(api, sent)

    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "processed"
    assert await _stored(app, "typeform", token) == await _stored(app, "test", token)


async def test_match_expected_for_each_rule(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await _load_accounts(api)
    endpoint = await create_endpoint(api)
    expected = {
        "named account": ("ACME", "account_external_id", None),
        "named merged-away account": ("ACME", "account_external_id", "OLD"),
        "contact of one account": ("ACME", "contact", None),
        "domain of one account": ("BETA", "email_domain", None),
        "contact of two accounts": (None, None, None),
        "domain of two accounts": (None, None, None),
    }
    for case, (account, matched_by, merged_from) in expected.items():
        token = new_token()
        response = await deliver(client, endpoint["id"], _typeform_body(token, *CASES[case]))
        assert response.status_code == 200, response.text

        stored = await _stored(app, "typeform", token)
        assert stored == {"account": account, "matched_by": matched_by, "merged_from": merged_from}


async def test_manual_assignment_kept_on_update(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await _load_accounts(api)
    endpoint = await create_endpoint(api)
    token = new_token()
    first = await deliver(client, endpoint["id"], _typeform_body(token, "ACME", None))
    assert first.status_code == 200, first.text
    assigned = await api.post(
        f"/v1/responses/typeform/{token}/assign", json={"account_external_id": "BETA"}
    )
    assert assigned.status_code == 200, assigned.text

    def new_version(payload: dict[str, Any]) -> None:
        payload["event_id"] = uuid.uuid4().hex
        payload["form_response"]["hidden"] = {"account_id": "ACME"}
        payload["form_response"]["answers"][0]["number"] = 3

    updated = await deliver(client, endpoint["id"], variant(token, new_version))

    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "processed"
    stored = await _stored(app, "typeform", token)
    assert stored == {"account": "BETA", "matched_by": "manual", "merged_from": None}


async def test_rotated_secret_not_used_from_cache(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api)
    cached = await deliver(client, endpoint["id"], variant(new_token()))
    assert cached.status_code == 200, cached.text
    rotated = await api.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"secrets": [NEW_SECRET]}
    )
    assert rotated.status_code == 200, rotated.text

    body = variant(new_token())
    old_secret = await deliver(client, endpoint["id"], body)
    new_secret = await deliver(client, endpoint["id"], body, signature=sign(body, NEW_SECRET))

    assert old_secret.status_code == 401, old_secret.text
    assert new_secret.status_code == 200, new_secret.text
    assert new_secret.json()["status"] == "processed"


async def test_changed_mapping_not_used_from_cache(
    app: FastAPI, api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await _load_accounts(api)
    endpoint = await create_endpoint(api)
    cached = await deliver(client, endpoint["id"], variant(new_token()))
    assert cached.status_code == 200, cached.text
    changed = await api.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"account_field": "company"}
    )
    assert changed.status_code == 200, changed.text
    token = new_token()

    def company_field(payload: dict[str, Any]) -> None:
        payload["form_response"]["hidden"] = {"account_id": "BETA", "company": "ACME"}

    response = await deliver(client, endpoint["id"], variant(token, company_field))

    assert response.status_code == 200, response.text
    assert (await _stored(app, "typeform", token))["account"] == "ACME"


async def test_connection_lost_mid_statement(
    database_url: str, api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    # The delivery waits on the tenant's resolution lock, held here exclusively as an
    # account change would; its connection is then terminated, as in a failover. It must
    # get a 503 with nothing stored, and the platform's retry must then be processed.
    endpoint = await create_endpoint(api)
    tenant_id = endpoint["id"].split("_")[1]
    token = new_token()
    body = variant(token)
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            RESOLUTION_LOCK_CLASS,
            str(uuid.UUID(hex=tenant_id)),
        )
        pending = asyncio.create_task(deliver(client, endpoint["id"], body))
        await _wait_for_lock_waiter(admin)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'revcov' AND wait_event_type = 'Lock'"
        )
        cut = await pending
        await admin.execute("SELECT pg_advisory_unlock_all()")
    finally:
        await admin.close()
    retried = await deliver(client, endpoint["id"], body)

    assert cut.status_code == 503, cut.text
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "processed"


async def _wait_for_lock_waiter(admin: asyncpg.Connection) -> None:
    for _ in range(600):
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'revcov' "
            "AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the delivery never waited on the lock")
