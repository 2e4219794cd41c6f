"""Fuzzing the webhook receive route: mutated recorded payloads, signed with the endpoint's
secret, sent through HTTP to the real database.

Every answer is a 2xx after the delivery is stored, or a 4xx problem document that wrote
nothing. No adapter crash is hidden as a failed delivery either.
"""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.conftest import make_tenant
from tests.fuzz_payloads import TARGETS, Target, delivery_headers, payloads
from tests.helpers import PROBLEM_JSON, client_with_key
from tests.tenant_data import tenant_snapshot

# Standard Webhooks signatures must be within five minutes of the service clock.
RECEIVED_AT = datetime.now(UTC).replace(microsecond=0)


async def fuzz_endpoint(app: FastAPI, target: Target) -> tuple[uuid.UUID, str]:
    """Create a tenant with an endpoint for the target and return both ids.

    Each example gets a tenant of its own: the background fetcher may still be working on
    an earlier example's pending delivery, which would change a shared tenant's rows
    between the snapshots. A new endpoint also avoids deduplication, because most
    mutations keep the sample's delivery id."""
    tenant_id, key = await make_tenant(app, f"fuzz-{target.source}")
    settings: dict[str, object] = {"source": target.source, **target.mapping}
    if target.secret is not None:
        settings["secret"] = target.secret
    if target.url_token is not None:
        settings["token"] = target.url_token
    async with client_with_key(app, key) as api:
        created = await api.post("/v1/webhook-endpoints", json=settings)
    assert created.status_code == 201, created.text
    return tenant_id, created.json()["id"]


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.source)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # The clock is set once and stays the same for every example.
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
async def test_receive_never_crashes(
    app: FastAPI, set_clock: Callable[[datetime], None], target: Target, data: st.DataObject
) -> None:
    set_clock(RECEIVED_AT)
    tenant_id, endpoint_id = await fuzz_endpoint(app, target)
    body = data.draw(payloads(target), label="body")
    headers = delivery_headers(target)
    if target.secret is not None:
        body, headers = target.sign(body, headers, target.secret, RECEIVED_AT)
    before = await tenant_snapshot(app, tenant_id)

    transport = httpx.ASGITransport(app=app)
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(
                f"/v1/webhooks/{endpoint_id}",
                params={} if target.url_token is None else {"token": target.url_token},
                content=body,
                headers=headers,
            )
    after = await tenant_snapshot(app, tenant_id)

    assert response.status_code < 500, response.text
    crashes = [entry for entry in logs if entry["event"] == "webhook.adapter_crashed"]
    assert crashes == []
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["status"] == response.status_code
        assert after == before
    else:
        assert response.json()["status"] in {
            "processed",
            "pending",
            "ignored",
            "failed",
            "duplicate",
        }
