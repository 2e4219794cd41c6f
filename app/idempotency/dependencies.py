import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import SessionDep
from app.idempotency import service as idempotency_service
from app.idempotency.service import IdempotentRequest
from app.routing import ServiceRequest
from app.tenancy.dependencies import CurrentCaller

MAX_KEY_LENGTH = 255

ResultT = TypeVar("ResultT", bound=BaseModel)


def _canonical_body(value: Any) -> bytes:
    # Key order and whitespace do not make two bodies differ; numbers keep their exact text.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


async def _request_hash(request: Request, *, raw_body: bytes | None = None) -> bytes:
    """Hash the method, the path and the JSON body, or, for a route that reads another media
    type, the content type, the query string (its options) and the raw body."""
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path}\n".encode())
    if raw_body is not None:
        # The media type alone, in lower case: `Text/CSV; charset=utf-8` is `text/csv`.
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        digest.update(f"{media_type}\n{request.url.query}\n".encode())
        digest.update(raw_body)
        return digest.digest()
    body = None
    if await request.body():
        # The JSON document, because a route's `json()` may return its validated model.
        if isinstance(request, ServiceRequest):
            body = await request.json_document()
        else:
            body = await request.json()
    digest.update(_canonical_body(body))
    return digest.digest()


@dataclass
class IdempotentWrite:
    """Runs a route's write at most once per `Idempotency-Key`, or every time without one."""

    session: AsyncSession
    tenant_id: uuid.UUID
    request: IdempotentRequest | None
    response: Response
    status_code: int
    # The key and the request, for a route that hashes its raw body itself (see `for_body`).
    key: str | None = None
    http_request: Request | None = None

    async def for_body(self, body: bytes) -> "IdempotentWrite":
        """Return this write keyed on `body` as it was sent, for a route whose body is not
        JSON and that has read it itself."""
        if self.key is None or self.http_request is None:
            return self
        request_hash = await _request_hash(self.http_request, raw_body=body)
        return replace(self, request=IdempotentRequest(key=self.key, request_hash=request_hash))

    async def run(
        self, result_type: type[ResultT], operation: Callable[[], Awaitable[ResultT]]
    ) -> ResultT:
        if self.request is None:
            return await operation()
        outcome = await idempotency_service.run_once(
            self.session,
            self.tenant_id,
            self.request,
            operation,
            result_type=result_type,
            status_code=self.status_code,
        )
        self.response.status_code = outcome.status_code
        if outcome.replayed:
            self.response.headers["Idempotent-Replayed"] = "true"
        return outcome.result


async def get_idempotent_write(
    session: SessionDep,
    caller: CurrentCaller,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            pattern=r"^[\x20-\x7e]+$",
            description="A unique value per write, such as a UUID. A retry with the same key "
            "and body returns the first response without writing again; keys are kept at "
            "least 24 hours.",
        ),
    ] = None,
) -> IdempotentWrite:
    route = request.scope.get("route")
    status_code = getattr(route, "status_code", None) or 200
    idempotent_request = None
    if idempotency_key is not None and not getattr(route, "reads_raw_body", False):
        idempotent_request = IdempotentRequest(
            key=idempotency_key, request_hash=await _request_hash(request)
        )
    return IdempotentWrite(
        session=session,
        tenant_id=caller.tenant.id,
        request=idempotent_request,
        response=response,
        status_code=status_code,
        key=idempotency_key,
        http_request=request,
    )


Idempotency = Annotated[IdempotentWrite, Depends(get_idempotent_write)]
