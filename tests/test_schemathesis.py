"""Schemathesis against the OpenAPI schema of a real server on 127.0.0.1.

The server runs in a subprocess on the test database, and Schemathesis sends requests
generated from `/openapi.json` with the key of a tenant that has every scope. Every check
runs: no 5xx, status codes, content types, headers and bodies as documented, schema-invalid
input rejected, schema-valid input accepted, authentication enforced. The few per-operation
adjustments, each with its reason, are in tests/schemathesis.toml.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_tenant
from tests.helpers import client_with_key
from tests.test_isolation_matrix import TYPEFORM_SECRET, typeform_delivery

CONFIG = Path(__file__).parent / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# A fixed seed keeps CI runs reproducible. With 10 examples per operation, this test took
# 3 minutes on a 2-core machine that other test suites shared at the same time.
SEED = 20261205
MAX_EXAMPLES = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Serve the app on the test database from a subprocess; yield its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "REVCOV_DATABASE_URL": database_url,
        "REVCOV_ENVIRONMENT": "test",
        "REVCOV_LOG_LEVEL": "warning",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not start within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
async def api_key_with_data(app: FastAPI) -> str:
    """Create a tenant with an account, a webhook endpoint and a delivery; return its key.

    Schemathesis does not get the ids, because a path parameter pinned to a real id turns
    its schema-invalid variants into valid requests, which `negative_data_rejection`
    then reports. The webhook routes are fuzzed with real endpoints by
    tests/test_fuzz_webhooks.py.
    """
    _, key = await make_tenant(app, "schemathesis")
    async with client_with_key(app, key) as api:
        account = await api.put(
            "/v1/accounts/ACME-1",
            json={
                "name": "Acme",
                "revenue": {
                    "amount": "1000.00",
                    "currency": "USD",
                    "effective_at": "2026-01-01T00:00:00Z",
                },
            },
        )
        assert account.status_code == 201, account.text
        endpoint = await api.post(
            "/v1/webhook-endpoints", json={"source": "typeform", "secret": TYPEFORM_SECRET}
        )
        assert endpoint.status_code == 201, endpoint.text
        endpoint_id = endpoint.json()["id"]
        body, headers = typeform_delivery(TYPEFORM_SECRET, "schemathesis-token", "fine")
        delivery = await api.post(f"/v1/webhooks/{endpoint_id}", content=body, headers=headers)
        assert delivery.status_code == 200, delivery.text
    return key


def test_schemathesis_finds_nothing(api_key_with_data: str, server: str, tmp_path: Path) -> None:
    command = [
        str(SCHEMATHESIS),
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{server}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {api_key_with_data}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--output-truncate",
        "false",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]

    # Schemathesis keeps a cache in its working directory.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)

    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
