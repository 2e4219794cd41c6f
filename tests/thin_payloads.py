"""Helpers for thin-payload tests: a real HTTP server on 127.0.0.1 that replays recorded
platform API responses, and fetch passes run at a chosen time."""

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import FastAPI

from app.webhooks.tasks import FetchContext, run_due_fetches
from tests.webhook_samples import SAMPLES

_FIRST_MOMENT = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3650)
_moment_offsets = itertools.count()


def fresh_moment() -> datetime:
    """Return a time years ahead, one day earlier than the moment returned before it.

    A fetch pass claims the due deliveries of every tenant. A test that receives and
    fetches at its own fresh moment therefore never claims what earlier tests left
    pending, because their moments are later. The app's own fetcher runs on the real
    clock and claims none of them.
    """
    return _FIRST_MOMENT - timedelta(days=next(_moment_offsets))


def load_api_body(name: str) -> tuple[bytes, dict[str, Any]]:
    """Return a recorded API response's exact bytes and its sidecar."""
    meta: dict[str, Any] = json.loads((SAMPLES / f"{name}.meta.json").read_text())
    return (SAMPLES / meta["body_file"]).read_bytes(), meta


async def run_pass(app: FastAPI, moment: datetime, **settings: Any) -> int:
    """Run one fetch pass of `app` as if the time were `moment`, with settings overridden."""
    context: FetchContext = app.state.fetch_context
    if settings:
        context = replace(context, settings=context.settings.model_copy(update=settings))
    return await run_due_fetches(replace(context, clock=lambda: moment))


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


class _QuietServer(ThreadingHTTPServer):
    """A server that ignores clients hanging up early, as the fetch timeout tests make
    them do, instead of printing a traceback for each."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ReplayServer:
    """Serve each path's queued replies in turn, repeating the last one. A path without
    replies gets 404. Every request is recorded, and `delay` slows each response."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.delay = 0.0
        self._replies: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._replies[path] = list(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _next_reply(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers))
            queue = self._replies.get(path)
            if not queue:
                return Reply(404, b'{"error": "not found"}')
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = server._next_reply("GET", self.path, headers)
                if server.delay:
                    time.sleep(server.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output free of access lines."""

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def replay_server() -> Iterator[ReplayServer]:
    server = ReplayServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
