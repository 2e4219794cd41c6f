"""Structured logs as the service writes them: JSON lines off a terminal, console lines on
one, and the request id on every line of a request, service lines included."""

import asyncio
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog

from app import __version__
from app.logging import RequestIdMiddleware, configure_logging
from app.main import create_app
from app.settings import Settings
from app.webhooks.service import loggable_endpoint_id
from tests.test_webhooks_typeform import SAMPLE_BODY, create_endpoint, deliver

LogLines = Callable[[], list[dict[str, Any]]]

UPDATE = {
    "account_external_id": "ACME-1",
    "amount": "10.00",
    "currency": "USD",
    "effective_at": "2026-01-01T00:00:00Z",
}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the structlog and standard-library logging set-up back after the test."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    access_disabled = access.disabled
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = access_disabled


@pytest.fixture
def json_lines(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> LogLines:
    """Configure logging as `serve` does, with stderr a file rather than a terminal, and
    return a function that parses every line written so far. Tests request it after the
    `api` fixture, whose tenant creation is logged too."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", "auto")
    # The test client's own httpx lines are not the service's.
    monkeypatch.setattr(logging.getLogger("httpx"), "disabled", True)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    return lines


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == name]


class TestFormat:
    async def test_json_off_terminal(self, api: httpx.AsyncClient, json_lines: LogLines) -> None:
        await api.get("/v1/tenant")

        lines = json_lines()
        completed = events(lines, "request.completed")
        assert len(completed) == 1
        assert completed[0]["level"] == "info"
        assert completed[0]["status"] == 200
        assert completed[0]["timestamp"].endswith("Z")

    def test_console_on_terminal(
        self, restore_logging: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stream = Terminal()
        monkeypatch.setattr(sys, "stderr", stream)
        configure_logging("info", "auto")

        structlog.get_logger().info("test.console_line", answer=42)

        output = stream.getvalue()
        assert "test.console_line" in output
        assert not output.lstrip().startswith("{")

    def test_standard_library_lines_json(self, json_lines: LogLines) -> None:
        logging.getLogger("uvicorn.error").warning("Started server process [%d]", 7)

        lines = json_lines()
        assert lines[-1]["event"] == "Started server process [7]"
        assert lines[-1]["level"] == "warning"

    def test_lines_below_level_dropped(
        self, restore_logging: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        configure_logging("warning", "json")

        structlog.get_logger().info("test.below_level")
        structlog.get_logger().warning("test.at_level")

        names = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
        assert names == ["test.at_level"]

    def test_failed_write_not_raised(
        self, restore_logging: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sys, "stderr", ClosedPipe())
        configure_logging("info", "json")

        # As with a standard-library handler, the error is reported and not raised.
        structlog.get_logger().info("test.unwritable")


class TestRequestId:
    async def test_every_line_carries_sent_id(
        self, api: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        response = await api.post(
            "/v1/revenue-updates",
            json={"updates": [UPDATE]},
            headers={"X-Request-ID": "sync-run-17"},
        )

        lines = json_lines()
        assert response.headers["x-request-id"] == "sync-run-17"
        assert len(events(lines, "revenue.updated")) == 1
        assert len(events(lines, "request.completed")) == 1
        assert {line.get("request_id") for line in lines} == {"sync-run-17"}

    async def test_generated_id_returned(
        self, api: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        response = await api.get("/v1/tenant")

        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32
        assert int(request_id, 16) >= 0
        assert {line.get("request_id") for line in json_lines()} == {request_id}

    @pytest.mark.parametrize("sent", ["x" * 129, "tab\there", "two words", b"\xff\xfe"])
    async def test_unusable_id_replaced(
        self, api: httpx.AsyncClient, json_lines: LogLines, sent: str | bytes
    ) -> None:
        raw = sent if isinstance(sent, bytes) else sent.encode()
        response = await api.get("/v1/tenant", headers=[(b"X-Request-ID", raw)])

        assert response.headers["x-request-id"] != sent
        assert len(response.headers["x-request-id"]) == 32

    async def test_concurrent_requests_keep_own_ids(
        self, api: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        sent = [f"put-{index}" for index in range(8)]

        await asyncio.gather(
            *(
                api.put(f"/v1/accounts/ACME-{index}", json={}, headers={"X-Request-ID": request_id})
                for index, request_id in enumerate(sent)
            )
        )

        lines = json_lines()
        for event in ("account.created", "request.completed"):
            request_ids = sorted(line["request_id"] for line in events(lines, event))
            assert request_ids == sorted(sent), event

    async def test_route_template_not_path(
        self, api: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        await api.get("/v1/contacts/jane.doe@acme.com")

        completed = events(json_lines(), "request.completed")
        assert completed[0]["route"] == "/v1/contacts/{email}"
        assert "jane.doe" not in json.dumps(json_lines())

    async def test_rejection_logged_with_id(
        self, api: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        response = await api.get("/v1/accounts/NOPE", headers={"X-Request-ID": "lookup-3"})

        rejected = events(json_lines(), "request.rejected")
        assert response.status_code == 404
        assert len(rejected) == 1
        assert rejected[0]["request_id"] == "lookup-3"
        assert rejected[0]["error"] == "account-not-found"


class TestWebhookLines:
    async def test_bad_signature_logged_with_ids(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        endpoint = await create_endpoint(api)

        await deliver(client, endpoint["id"], SAMPLE_BODY, signature="sha256=bad")

        rejected = events(json_lines(), "webhook.signature_rejected")
        assert len(rejected) == 1
        assert rejected[0]["endpoint_id"] == loggable_endpoint_id(endpoint["id"])
        assert rejected[0]["source"] == "typeform"
        assert rejected[0]["level"] == "warning"
        assert "request_id" in rejected[0]
        assert endpoint["secret"] not in json.dumps(json_lines())

    async def test_delivery_logged_with_ids(
        self, api: httpx.AsyncClient, client: httpx.AsyncClient, json_lines: LogLines
    ) -> None:
        endpoint = await create_endpoint(api)

        response = await deliver(client, endpoint["id"], SAMPLE_BODY)

        received = events(json_lines(), "webhook.received")
        assert len(received) == 1
        assert received[0]["endpoint_id"] == loggable_endpoint_id(endpoint["id"])
        assert received[0]["delivery_id"] == response.json()["delivery_id"]
        assert received[0]["outcome"] == "unmatched"
        assert received[0]["request_id"] == response.headers["x-request-id"]


class TestLifecycleLines:
    async def test_start_and_stop_logged(
        self, database_url: str, settings: Settings, json_lines: LogLines
    ) -> None:
        application = create_app(settings, database_url=database_url)

        async with application.router.lifespan_context(application):
            started = events(json_lines(), "service.started")
            # The fetcher task logs its start once it first runs.
            for _ in range(100):
                if events(json_lines(), "webhook.fetcher_started"):
                    break
                await asyncio.sleep(0.01)
        lines = json_lines()

        assert len(started) == 1
        assert started[0]["version"] == __version__
        assert started[0]["environment"] == "test"
        assert started[0]["database"] == "embedded"
        assert len(events(lines, "webhook.fetcher_started")) == 1
        assert len(events(lines, "webhook.fetcher_stopped")) == 1
        assert len(events(lines, "service.stopped")) == 1
        assert database_url not in json.dumps(lines)


async def test_cancelled_request_gets_503() -> None:
    # As uvicorn cancels a request still running when its shutdown timeout ends.
    async def unfinished(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    sent: list[dict[str, Any]] = []

    async def record(message: Any) -> None:
        sent.append(message)

    async def no_body() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/revenue-updates", "headers": []}
    with pytest.raises(asyncio.CancelledError):
        await RequestIdMiddleware(unfinished)(scope, no_body, record)

    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 503
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"1"
    assert b"x-request-id" in headers
    assert json.loads(body["body"])["type"] == "urn:revcov:problem:service-unavailable"
