"""Monthly partitions of raw webhook deliveries, their retention, and delivery keys that
outlive dropped partitions.

The tests run on a database of their own, because they create and drop partitions of
months far ahead, which would change where other tests' deliveries are stored.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.db.session import session_scope
from app.settings import Settings
from app.webhooks.partitions import (
    DELIVERY_KEY_MARGIN,
    list_monthly_partitions,
    run_maintenance,
)
from tests.conftest import make_tenant
from tests.helpers import client_with_key
from tests.test_webhooks_typeform import SECRET, sign, variant

# A month far enough ahead that no other data or partition touches it.
MONTH = datetime(2041, 3, 1, tzinfo=UTC)
RETENTION = timedelta(days=90)


async def _deliver(
    app: FastAPI, client: httpx.AsyncClient, path: str, body: bytes, moment: datetime
) -> dict[str, Any]:
    app.state.clock = lambda: moment
    response = await client.post(
        path,
        content=body,
        headers={"Content-Type": "application/json", "Typeform-Signature": sign(body)},
    )
    assert response.status_code == 200, response.text
    ack: dict[str, Any] = response.json()
    return ack


async def _partitions(app: FastAPI) -> dict[str, datetime]:
    async with session_scope(app.state.sessionmaker) as session:
        return await list_monthly_partitions(session)


async def test_partitions_retention_and_keys(own_app: FastAPI, settings: Settings) -> None:
    _, key = await make_tenant(own_app)
    async with client_with_key(own_app, key) as client:
        endpoint = await client.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": SECRET}
        )
        assert endpoint.status_code == 201, endpoint.text
        path = f"/v1/webhooks/{endpoint.json()['id']}"
        body = variant("PARTITIONED0001")
        received = MONTH + timedelta(days=14)

        # No partition covers the month yet, so the delivery goes to the default one.
        stored = await _deliver(own_app, client, path, body, received)
        created = await run_maintenance(own_app.state.sessionmaker, settings, MONTH)
        after_create = await _partitions(own_app)
        readable = await client.get(f"/v1/webhook-deliveries/{stored['delivery_id']}")

        # Past the retention period the partition goes, but the delivery key stays.
        expiry = MONTH + timedelta(days=31) + RETENTION
        expired = await run_maintenance(own_app.state.sessionmaker, settings, expiry)
        after_drop = await client.get(f"/v1/webhook-deliveries/{stored['delivery_id']}")
        late_retry = await _deliver(own_app, client, path, body, expiry)

        # Once the key margin is over too, the same delivery is stored anew.
        forgotten = await run_maintenance(
            own_app.state.sessionmaker, settings, expiry + DELIVERY_KEY_MARGIN + timedelta(days=16)
        )
        stored_again = await _deliver(own_app, client, path, body, expiry + timedelta(days=60))

    assert stored["status"] == "processed"
    assert created.created == [
        "webhook_deliveries_p2041_03",
        "webhook_deliveries_p2041_04",
        "webhook_deliveries_p2041_05",
    ]
    assert created.moved_from_default == 1
    assert "webhook_deliveries_p2041_03" in after_create
    assert readable.status_code == 200, readable.text
    assert "webhook_deliveries_p2041_03" in expired.dropped
    assert after_drop.status_code == 404
    assert late_retry["status"] == "duplicate"
    assert forgotten.deleted_keys >= 1
    assert stored_again["status"] == "processed"
    assert stored_again["delivery_id"] != stored["delivery_id"]


def test_retention_below_a_week_rejected() -> None:
    with pytest.raises(ValidationError, match="webhook_delivery_retention_days"):
        Settings(webhook_delivery_retention_days=6)


def test_maintain_command_prints_result(migrated_database: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "maintain"],
        env={**os.environ, "REVCOV_DATABASE_URL": migrated_database, "REVCOV_LOG_LEVEL": "error"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["created"] == []
    assert output["dropped"] == []
