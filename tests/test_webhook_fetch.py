"""The background fetcher for thin payloads: retries, failures, concurrent passes and the
loop's life cycle, against a local server that replays the recorded Qualtrics response."""

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from app.db.session import create_sessionmaker
from app.main import create_app
from app.settings import Settings
from app.webhooks.public_transport import (
    InvalidHostError,
    NonPublicAddressError,
    PublicAddressTransport,
    public_address,
)
from app.webhooks.service import loggable_endpoint_id
from app.webhooks.tasks import (
    MAX_RETRY_DELAY,
    FetchContext,
    create_fetch_client,
    retry_delay,
    run_fetch_loop,
    stop_fetch_loop,
)
from tests.conftest import make_tenant
from tests.thin_payloads import (
    ReplayServer,
    Reply,
    fresh_moment,
    load_api_body,
    replay_server,
    run_pass,
)
from tests.webhook_samples import create_endpoint, load_sample, post_delivery, stored_response

SAMPLE = load_sample("qualtrics-completedResponse")
SECRET = SAMPLE.signature["test_secret"]
API_BODY, API_META = load_api_body("qualtrics-response.api")
MESSAGE = json.loads(parse_qs(SAMPLE.body.decode())["MSG"][0])
TOPIC = "exampleco.surveyengine.completedResponse.SV_3xYzAbCdEf12345"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def api_path(response_id: str = MESSAGE["ResponseID"]) -> str:
    return f"/API/v3/surveys/{MESSAGE['SurveyID']}/responses/{response_id}"


def completed_response(response_id: str) -> bytes:
    """A signed `completedResponse` form body for another response of the sample's survey."""
    text = json.dumps({**MESSAGE, "ResponseID": response_id}, separators=(",", ":"))
    signature = hmac.new(SECRET.encode(), text.encode(), hashlib.sha512).hexdigest()
    return urlencode({"HMAC": signature, "MSG": text, "Topic": TOPIC}).encode()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with replay_server() as running:
        yield running


@pytest.fixture
def moment(set_clock: Callable[[datetime], None]) -> datetime:
    """The time deliveries arrive at and fetch passes run at, for this test alone."""
    now = fresh_moment()
    set_clock(now)
    return now


async def new_endpoint(api: httpx.AsyncClient, base_url: str) -> str:
    endpoint = await create_endpoint(
        api, source="qualtrics", secret=SECRET, api_base_url=base_url, api_token="qualtrics-token"
    )
    endpoint_id: str = endpoint["id"]
    return endpoint_id


async def delivery(api: httpx.AsyncClient, delivery_id: int) -> dict[str, Any]:
    response = await api.get(f"/v1/webhook-deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


async def post_sample(client: httpx.AsyncClient, endpoint_id: str) -> int:
    ack = await post_delivery(client, endpoint_id, SAMPLE.body, SAMPLE.headers)
    assert ack.json()["status"] == "pending", ack.text
    delivery_id: int = ack.json()["delivery_id"]
    return delivery_id


def test_retry_delay_grows_with_jitter_and_cap() -> None:
    for attempts in range(1, 14):
        ceiling = min(MAX_RETRY_DELAY, timedelta(seconds=30 * 2 ** (attempts - 1)))
        delays = [retry_delay(attempts) for _ in range(50)]

        assert min(delays) >= ceiling / 2, attempts
        assert max(delays) <= ceiling, attempts
        assert len(set(delays)) > 1, attempts


def test_retry_delay_honours_retry_after_up_to_cap() -> None:
    assert retry_delay(1, timedelta(minutes=10)) == timedelta(minutes=10)
    assert retry_delay(1, timedelta(days=2)) == MAX_RETRY_DELAY


async def test_503_then_200_retried_with_backoff(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    server.reply(api_path(), Reply(503, b'{"meta": {"httpStatus": "503"}}'), Reply(200, API_BODY))
    endpoint_id = await new_endpoint(api, server.url)
    delivery_id = await post_sample(client, endpoint_id)

    with capture_logs() as logs:
        first = await run_pass(app, moment)
    retried = await delivery(api, delivery_id)
    retry_logs = [
        entry
        for entry in logs
        if entry["event"] == "webhook.fetch_retry" and entry.get("delivery_id") == delivery_id
    ]

    assert first == 1
    assert retried["status"] == "pending"
    assert retried["attempts"] == 1
    assert "HTTP 503" in retried["error"]
    next_attempt_at = datetime.fromisoformat(retried["next_attempt_at"])
    assert moment + timedelta(seconds=15) <= next_attempt_at <= moment + timedelta(seconds=30)
    assert len(retry_logs) == 1
    assert retry_logs[0]["endpoint_id"] == loggable_endpoint_id(endpoint_id)
    assert "HTTP 503" in retry_logs[0]["error"]

    too_early = await run_pass(app, moment + timedelta(seconds=14))

    assert too_early == 0
    assert len(server.requests) == 1

    second = await run_pass(app, next_attempt_at)
    processed = await delivery(api, delivery_id)
    stored = await stored_response(api, "qualtrics", MESSAGE["ResponseID"])

    assert second == 1
    assert len(server.requests) == 2
    assert processed["status"] == "processed"
    assert processed["attempts"] == 2
    assert processed["error"] is None
    assert processed["next_attempt_at"] is None
    assert stored["score"] == API_META["expected"]["score"]


async def test_404_failed_with_reason(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    server.reply(api_path(), Reply(404, b'{"meta": {"httpStatus": "404 - Not Found"}}'))
    endpoint_id = await new_endpoint(api, server.url)
    delivery_id = await post_sample(client, endpoint_id)

    await run_pass(app, moment)
    later = await run_pass(app, moment + timedelta(days=1) - timedelta(seconds=1))
    failed = await delivery(api, delivery_id)
    listed = await api.get("/v1/webhook-deliveries", params={"status": "failed"})

    assert failed["status"] == "failed"
    assert "HTTP 404" in failed["error"]
    assert api_path() in failed["error"]
    assert "api_token" in failed["error"]
    assert failed["next_attempt_at"] is None
    assert later == 0
    assert len(server.requests) == 1
    assert [item["id"] for item in listed.json()["items"]] == [delivery_id]


async def test_failed_fetch_replayed_after_fix(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    server.reply(api_path(), Reply(401, b'{"meta": {"httpStatus": "401 - Unauthorized"}}'))
    endpoint_id = await new_endpoint(api, server.url)
    delivery_id = await post_sample(client, endpoint_id)
    await run_pass(app, moment)
    assert (await delivery(api, delivery_id))["status"] == "failed"

    server.reply(api_path(), Reply(200, API_BODY))
    patched = await api.patch(
        f"/v1/webhook-endpoints/{endpoint_id}", json={"api_token": "a-new-valid-token"}
    )
    replayed = await api.post(f"/v1/webhook-deliveries/{delivery_id}/replay")
    await run_pass(app, moment)
    processed = await delivery(api, delivery_id)

    assert patched.status_code == 200
    assert replayed.json()["status"] == "pending"
    assert processed["status"] == "processed"
    assert server.requests[-1].headers["x-api-token"] == "a-new-valid-token"


async def test_429_waits_for_retry_after(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    server.reply(api_path(), Reply(429, b"{}", {"Retry-After": "600"}), Reply(200, API_BODY))
    endpoint_id = await new_endpoint(api, server.url)
    delivery_id = await post_sample(client, endpoint_id)

    await run_pass(app, moment)
    waiting = await delivery(api, delivery_id)
    next_attempt_at = datetime.fromisoformat(waiting["next_attempt_at"])
    await run_pass(app, next_attempt_at)

    assert waiting["status"] == "pending"
    assert "HTTP 429" in waiting["error"]
    assert next_attempt_at == moment + timedelta(seconds=600)
    assert (await delivery(api, delivery_id))["status"] == "processed"


async def test_connection_error_retried(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    endpoint_id = await new_endpoint(api, closed_port_url())
    delivery_id = await post_sample(client, endpoint_id)

    await run_pass(app, moment)
    retried = await delivery(api, delivery_id)

    assert retried["status"] == "pending"
    assert retried["attempts"] == 1
    assert "ConnectError" in retried["error"]

    server.reply(api_path(), Reply(200, API_BODY))
    await api.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"api_base_url": server.url})
    await run_pass(app, moment + MAX_RETRY_DELAY)

    assert (await delivery(api, delivery_id))["status"] == "processed"


async def test_gives_up_after_max_attempts(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    server.reply(api_path(), Reply(502, b"bad gateway"))
    endpoint_id = await new_endpoint(api, server.url)
    delivery_id = await post_sample(client, endpoint_id)

    statuses = []
    for attempt in range(3):
        await run_pass(app, moment + attempt * MAX_RETRY_DELAY, webhook_fetch_max_attempts=3)
        statuses.append((await delivery(api, delivery_id))["status"])
    final = await delivery(api, delivery_id)

    assert statuses == ["pending", "pending", "failed"]
    assert final["attempts"] == 3
    assert final["error"].startswith("gave up after 3 attempts")
    assert "HTTP 502" in final["error"]
    assert len(server.requests) == 3


async def test_unreadable_api_response_failed(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    server.reply(api_path(), Reply(200, b"<html>maintenance</html>"))
    endpoint_id = await new_endpoint(api, server.url)
    delivery_id = await post_sample(client, endpoint_id)

    await run_pass(app, moment)
    failed = await delivery(api, delivery_id)

    assert failed["status"] == "failed"
    assert "not valid JSON" in failed["error"]


async def test_concurrent_passes_fetch_each_once(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
) -> None:
    response_ids = [f"R_concurrent{number:05d}" for number in range(7)]
    for response_id in response_ids:
        server.reply(api_path(response_id), Reply(200, API_BODY))
    server.delay = 0.2
    endpoint_id = await new_endpoint(api, server.url)
    delivery_ids = []
    for response_id in response_ids:
        ack = await post_delivery(client, endpoint_id, completed_response(response_id), FORM)
        delivery_ids.append(ack.json()["delivery_id"])

    claimed = await asyncio.gather(
        run_pass(app, moment, webhook_fetch_batch_size=2),
        run_pass(app, moment, webhook_fetch_batch_size=2),
    )
    statuses = [(await delivery(api, delivery_id))["status"] for delivery_id in delivery_ids]

    assert sum(claimed) == len(response_ids)
    assert all(count > 0 for count in claimed)
    assert sorted(request.path for request in server.requests) == sorted(
        api_path(response_id) for response_id in response_ids
    )
    assert statuses == ["processed"] * len(response_ids)


async def test_lifespan_loop_fetches_and_stops(
    database_url: str, settings: Settings, server: ReplayServer
) -> None:
    server.reply(api_path(), Reply(200, API_BODY))
    fast = settings.model_copy(update={"webhook_fetch_interval_seconds": 0.05})
    own_app = create_app(fast, database_url=database_url)

    async with own_app.router.lifespan_context(own_app):
        task = own_app.state.fetch_task
        _, key = await make_tenant(own_app)
        transport = httpx.ASGITransport(app=own_app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as own_api:
            endpoint_id = await new_endpoint(own_api, server.url)
            delivery_id = await post_sample(own_api, endpoint_id)
            status = "pending"
            for _ in range(100):
                status = (await delivery(own_api, delivery_id))["status"]
                if status != "pending":
                    break
                await asyncio.sleep(0.05)

        assert status == "processed"
        assert not task.done()

    assert task.cancelled()


async def test_loop_survives_failing_passes(app: FastAPI) -> None:
    # Nothing listens on that port, so every pass fails to connect to the database.
    engine = create_async_engine(
        f"postgresql+asyncpg://revcov@{closed_port_url().removeprefix('http://')}/revcov"
    )
    context: FetchContext = app.state.fetch_context
    broken = replace(
        context,
        sessionmaker=create_sessionmaker(engine),
        settings=context.settings.model_copy(update={"webhook_fetch_interval_seconds": 0.01}),
    )

    with capture_logs() as logs:
        task = asyncio.create_task(run_fetch_loop(broken))
        for _ in range(200):
            if sum(entry["event"] == "webhook.fetch_pass_failed" for entry in logs) >= 3:
                break
            await asyncio.sleep(0.01)
        alive = not task.done()
        await stop_fetch_loop(task)
    await engine.dispose()
    failures = [entry for entry in logs if entry["event"] == "webhook.fetch_pass_failed"]

    assert alive
    assert task.cancelled()
    assert [entry["consecutive_failures"] for entry in failures[:3]] == [1, 2, 3]
    assert "exc_info" in failures[0]
    assert "error" in failures[1]
    assert "webhook.fetcher_stopped" in [entry["event"] for entry in logs]


# --- Fetches reach public addresses only ------------------------------------------------


@pytest.fixture
def resolve_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Make a host name resolve to a given address, as a DNS record would."""
    names: dict[str, str] = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            return real_getaddrinfo(names[host], port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def add(name: str, address: str) -> None:
        names[name] = address

    return add


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "169.254.169.254",
        "::1",
        "fd00::1",
        # IPv4 addresses embedded in IPv6: compatible, translated, NAT64, 6to4.
        "::7f00:1",
        "::ffff:0:a00:1",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
        # Multicast, which Python counts as global.
        "224.0.0.1",
        "ff02::1",
    ],
)
async def test_public_address_rejects_literal(host: str) -> None:
    with pytest.raises(NonPublicAddressError, match="not a public address"):
        await public_address(host, 443)


async def test_public_address_rejects_invalid_name() -> None:
    with pytest.raises(InvalidHostError, match="not a valid host name"):
        await public_address("a" * 70 + ".example.com", 443)


async def test_public_address_keeps_public_literal() -> None:
    assert await public_address("93.184.216.34", 443) == "93.184.216.34"


async def test_public_address_rejects_private_name(
    resolve_to: Callable[[str, str], None],
) -> None:
    resolve_to("metadata.survey.test", "169.254.169.254")

    with pytest.raises(NonPublicAddressError, match="non-public address 169.254.169.254"):
        await public_address("metadata.survey.test", 80)


async def test_transport_pins_checked_address(resolve_to: Callable[[str, str], None]) -> None:
    resolve_to("api.survey.test", "93.184.216.34")
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    transport = PublicAddressTransport(httpx.MockTransport(record))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://api.survey.test/API/v3/x?y=1")

    assert response.status_code == 200
    assert str(response.request.url) == "https://api.survey.test/API/v3/x?y=1"
    assert str(sent[0].url) == "https://93.184.216.34/API/v3/x?y=1"
    assert sent[0].headers["host"] == "api.survey.test"
    assert sent[0].extensions["sni_hostname"] == "api.survey.test"


async def test_fetch_from_private_name_not_sent(
    app: FastAPI,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    server: ReplayServer,
    moment: datetime,
    resolve_to: Callable[[str, str], None],
) -> None:
    # The endpoint check accepts a host name, which here resolves to the local server.
    resolve_to("api.survey.test", "127.0.0.1")
    port = httpx.URL(server.url).port
    server.reply(api_path(), Reply(200, API_BODY))
    endpoint_id = await new_endpoint(api, f"http://api.survey.test:{port}")
    delivery_id = await post_sample(client, endpoint_id)
    context: FetchContext = app.state.fetch_context
    guarded = create_fetch_client(allow_private_hosts=False)
    app.state.fetch_context = replace(context, client=guarded)
    try:
        await run_pass(app, moment)
    finally:
        app.state.fetch_context = context
        await guarded.aclose()

    failed = await delivery(api, delivery_id)
    assert failed["status"] == "failed"
    # The stored error leaves the address out, so a tenant cannot map internal host names
    # to addresses through it.
    assert failed["error"] == (
        "the qualtrics API host in api_base_url is or resolves to a non-public address. "
        "Fix the endpoint's api_base_url, then replay the delivery"
    )
    assert server.requests_to(api_path()) == []
