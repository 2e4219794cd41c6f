"""Two `revcov serve` processes on one database behave as one service.

Both start at once on a fresh database, so both run the migrations concurrently. Webhook
deliveries go to either process, some of them to both. Thin payloads are fetched by the
background fetchers of both processes from a local fake platform API, which counts the
requests, so a response fetched twice shows up as a second request.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port
from tests.test_webhook_fetch import API_BODY, FORM, SECRET, api_path, completed_response
from tests.test_webhooks_typeform import SECRET as TYPEFORM_SECRET
from tests.test_webhooks_typeform import sign, variant
from tests.thin_payloads import ReplayServer, Reply, replay_server

STARTUP_SECONDS = 60.0
SETTLE_SECONDS = 60.0
# Each fetch waits this long, so both fetchers hold claimed deliveries at the same time.
FETCH_DELAY_SECONDS = 0.3


@contextmanager
def serve_process(database_url: str, log_path: Path) -> Iterator[str]:
    """Run `revcov serve` on a free loopback port until the block ends, and yield its URL."""
    port = free_port()
    env = {
        **os.environ,
        "REVCOV_DATABASE_URL": database_url,
        "REVCOV_ENVIRONMENT": "test",
        "REVCOV_LOG_FORMAT": "json",
        "REVCOV_LOG_LEVEL": "info",
        "REVCOV_WEBHOOK_FETCH_INTERVAL_SECONDS": "0.1",
        "REVCOV_WEBHOOK_FETCH_BATCH_SIZE": "2",
        "REVCOV_WEBHOOK_FETCH_ALLOW_PRIVATE_HOSTS": "true",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from app.cli import main; main()",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_until_ready(url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    log = await asyncio.to_thread(log_path.read_text)
    pytest.fail(f"revcov serve at {url} was not ready within {STARTUP_SECONDS:g} s; log:\n{log}")


def fetched_events(log_path: Path) -> list[dict[str, Any]]:
    """The `webhook.fetched` log lines of one process."""
    events = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "webhook.fetched":
                events.append(event)
    return events


async def create_tenant(database_url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app.cli import main; main()",
        "tenants",
        "create",
        "two-processes",
        env={**os.environ, "REVCOV_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    key: str = json.loads(output)["api_key"]
    return key


async def wait_for_settled(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """Poll until `count` deliveries are stored and none is pending, then return them."""
    deadline = time.monotonic() + SETTLE_SECONDS
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = await client.get("/v1/webhook-deliveries", params={"limit": 1000})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if len(items) == count and all(item["status"] != "pending" for item in items):
            return items
        await asyncio.sleep(0.2)
    pytest.fail(f"deliveries did not settle: {[item['status'] for item in items]}")


@pytest.fixture
def platform_api() -> Iterator[ReplayServer]:
    with replay_server() as server:
        server.delay = FETCH_DELAY_SECONDS
        yield server


async def test_two_serve_processes_agree(
    scratch_database: str, platform_api: ReplayServer, tmp_path: Path
) -> None:
    thin_ids = [f"R_twoprocs{number:04d}" for number in range(12)]
    for response_id in thin_ids:
        platform_api.reply(api_path(response_id), Reply(200, API_BODY))
    full_bodies = [variant(f"TWOPROCS{number:04d}") for number in range(6)]
    logs = [tmp_path / "serve-a.log", tmp_path / "serve-b.log"]

    async with AsyncExitStack() as stack:
        urls = [stack.enter_context(serve_process(scratch_database, path)) for path in logs]
        ready = [wait_until_ready(url, path) for url, path in zip(urls, logs, strict=True)]
        await asyncio.gather(*ready)
        key = await create_tenant(scratch_database)
        headers = {"Authorization": f"Bearer {key}"}
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=headers))
            for url in urls
        ]
        await _run_scenario(clients, platform_api, thin_ids, full_bodies)
        answers = [await _answers(client) for client in clients]

    fetched = [fetched_events(path) for path in logs]

    assert answers[0] == answers[1]
    assert sorted(request.path for request in platform_api.requests) == sorted(
        api_path(response_id) for response_id in thin_ids
    )
    assert len(fetched[0]) + len(fetched[1]) == len(thin_ids)
    assert len(fetched[0]) > 0, "the first process fetched nothing"
    assert len(fetched[1]) > 0, "the second process fetched nothing"


async def _run_scenario(
    clients: list[httpx.AsyncClient],
    platform_api: ReplayServer,
    thin_ids: list[str],
    full_bodies: list[bytes],
) -> None:
    """Create endpoints on one process, then send every delivery to one process or both."""
    qualtrics = await clients[0].post(
        "/v1/webhook-endpoints",
        json={
            "source": "qualtrics",
            "secret": SECRET,
            "api_base_url": platform_api.url,
            "api_token": "qualtrics-token",
        },
    )
    assert qualtrics.status_code == 201, qualtrics.text
    typeform = await clients[1].post(
        "/v1/webhook-endpoints", json={"source": "typeform", "secret": TYPEFORM_SECRET}
    )
    assert typeform.status_code == 201, typeform.text
    qualtrics_url = f"/v1/webhooks/{qualtrics.json()['id']}"
    typeform_url = f"/v1/webhooks/{typeform.json()['id']}"

    posts = []
    for number, response_id in enumerate(thin_ids):
        body = completed_response(response_id)
        targets = clients if number % 3 == 0 else [clients[number % 2]]
        posts += [client.post(qualtrics_url, content=body, headers=FORM) for client in targets]
    for number, body in enumerate(full_bodies):
        typeform_headers = {"Content-Type": "application/json", "Typeform-Signature": sign(body)}
        targets = clients if number % 2 == 0 else [clients[number % 2]]
        posts += [
            client.post(typeform_url, content=body, headers=typeform_headers) for client in targets
        ]
    acks = await asyncio.gather(*posts)

    assert [ack.status_code for ack in acks if ack.status_code >= 300] == []
    await wait_for_settled(clients[0], len(thin_ids) + len(full_bodies))


async def _answers(client: httpx.AsyncClient) -> dict[str, Any]:
    deliveries = await client.get("/v1/webhook-deliveries", params={"limit": 1000})
    responses = await client.get("/v1/responses", params={"limit": 1000})
    coverage = await client.get("/v1/coverage", params={"period": "2026-Q1"})
    for response in (deliveries, responses, coverage):
        assert response.status_code == 200, response.text
    return {
        "deliveries": sorted(
            (item["id"], item["status"], item["response_id"]) for item in deliveries.json()["items"]
        ),
        "responses": responses.json()["items"],
        "coverage": coverage.json(),
    }
