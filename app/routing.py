"""Request body handling shared by every route: a size cap and exact JSON numbers.

JSON numbers are parsed as `Decimal`, so an amount such as 90071992547409.93 reaches the
service exactly instead of through a binary float. `NaN` and `Infinity` are rejected.
"""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

# Per-request cap in bytes, set by the app (and lowered by routes such as webhooks).
MAX_BODY_SCOPE_KEY = "revcov.max_body_bytes"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a valid JSON number", name, 0)


class ServiceRequest(Request):
    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = await read_body_capped(self, self.scope.get(MAX_BODY_SCOPE_KEY))
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
        return self._json


async def read_body_capped(request: Request, limit: int | None) -> bytes:
    """Read the whole body, answering 413 as soon as it exceeds `limit` bytes.

    A declared `Content-Length` over the limit is rejected before any byte is read.
    """
    cap = limit if limit is not None else DEFAULT_MAX_BODY_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _too_large(int(declared), cap)

    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _too_large(size, cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, cap: int) -> HTTPException:
    # An HTTPException, because FastAPI turns any other error raised while it reads the
    # body into a generic 400.
    return HTTPException(
        status_code=413,
        detail=f"The request body is larger than the limit of {cap} bytes "
        f"(at least {size} bytes were sent); split it into smaller requests.",
    )


class ServiceRoute(APIRoute):
    """An APIRoute whose handlers receive a `ServiceRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(ServiceRequest(request.scope, request.receive))

        return handle
