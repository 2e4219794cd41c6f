"""Request body handling shared by every route: a size cap and exact JSON numbers.

JSON numbers are parsed as `Decimal`, so an amount such as 90071992547409.93 reaches the
service exactly instead of through a binary float. `NaN` and `Infinity` are rejected.
"""

import json
import re
import types
from collections import Counter
from collections.abc import Callable, Coroutine
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import InvalidField, UnprocessableError, problem_response, quote_value
from app.schemas import NUL_MESSAGE, text_problem

# Route template of a request that matched no route, such as a 404 for an unknown path.
NO_ROUTE = "none"
# The scope key under which a middleware that responds before routing stores the route's
# template, for the log lines and metrics of the request.
ROUTE_TEMPLATE_KEY = "revcov.route_template"

# Per-request cap in bytes, set by the app (and lowered by routes such as webhooks).
MAX_BODY_SCOPE_KEY = "revcov.max_body_bytes"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a valid JSON number", name, 0)


class _RepeatedKeyError(ValueError):
    """A key that occurs twice in one JSON object."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _check_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, _ in pairs:
        if problem := text_problem(key):
            raise json.JSONDecodeError(problem, key, 0)
    document = dict(pairs)
    if len(document) < len(pairs):
        # JSON leaves the meaning of a repeated key open (RFC 8259, section 4): a proxy
        # or signer that keeps the first value would read another request.
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKeyError(key)
            seen.add(key)
    return document


def _check_strings(value: Any, document: bytes) -> None:
    """Raise JSONDecodeError for a string that PostgreSQL text cannot store."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                raise json.JSONDecodeError(problem, document.decode(errors="replace"), 0)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


class ServiceRequest(Request):
    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = await read_body_capped(self, self.scope.get(MAX_BODY_SCOPE_KEY))
        return self._body

    async def json(self) -> Any:
        """Return the value that FastAPI validates as the route's body."""
        return await self.json_document()

    async def json_document(self) -> Any:
        """Return the body parsed by `load_json`."""
        if not hasattr(self, "_json"):
            self._json = load_json(await self.body())
        return self._json


# Python reads longer integers only with its int_max_str_digits limit raised, and no field
# of the API takes a number of more than a few dozen digits.
MAX_INTEGER_DIGITS = 4300


class _UnreadableNumberError(ValueError):
    """A JSON number that Python cannot read, with the reason for the client."""

    def __init__(self, number: str, reason: str) -> None:
        super().__init__(reason)
        self.number = number
        self.reason = reason


def parse_json_int(digits: str) -> int:
    """Read a JSON integer, rejecting one longer than `MAX_INTEGER_DIGITS` digits with a
    message for the client."""
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _UnreadableNumberError(
            digits,
            f"a number of {len(digits.lstrip('-'))} digits is longer than the "
            f"{MAX_INTEGER_DIGITS} a JSON number may have here",
        )
    return int(digits)


def parse_json_decimal(text: str) -> Decimal:
    """Read a JSON number with a fraction or exponent exactly, rejecting one whose exponent
    Python's decimals cannot hold with a message for the client."""
    try:
        return Decimal(text)
    except InvalidOperation:
        # An exponent beyond what Python's decimals hold, such as 1e99999999999999999999.
        raise _UnreadableNumberError(text, "a number with an exponent too large to read") from None


def load_json(body: bytes) -> Any:
    """Parse a JSON body with exact numbers, accepting only text that PostgreSQL stores.

    Raises JSONDecodeError, which FastAPI reports as a 422 naming the reason, also for a
    body that is not UTF-8 (FastAPI would answer any other error with a bare 400).
    """
    if b"\x00" in body:
        # JSON in UTF-8 contains no NUL byte. Text in UTF-16 or UTF-32, which `json.loads`
        # would otherwise decode, contains one in every ASCII character.
        text = body.decode(errors="replace")
        raise json.JSONDecodeError(
            "contains a NUL byte, as UTF-16 or UTF-32 text does; send the body as UTF-8",
            text,
            text.find("\x00"),
        )
    try:
        document = json.loads(
            body,
            parse_float=parse_json_decimal,
            parse_int=parse_json_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_check_keys,
        )
    except UnicodeDecodeError as error:
        # The position counts characters, as for other syntax errors, not bytes.
        position = len(body[: error.start].decode(errors="replace"))
        raise json.JSONDecodeError(
            "not valid UTF-8; send the body as UTF-8", body.decode(errors="replace"), position
        ) from None
    except _UnreadableNumberError as error:
        text = body.decode(errors="replace")
        raise json.JSONDecodeError(error.reason, text, max(text.find(error.number), 0)) from None
    except RecursionError:
        raise json.JSONDecodeError(
            "arrays or objects nest too deeply", body.decode(errors="replace"), 0
        ) from None
    except _RepeatedKeyError as error:
        text = body.decode(errors="replace")
        quoted = json.dumps(error.key, ensure_ascii=False)
        # The second occurrence, when the key is written without escapes.
        second = text.find(quoted, text.find(quoted) + 1)
        raise json.JSONDecodeError(
            f"the key {quoted} occurs more than once in one object; send each key once",
            text,
            max(second, 0),
        ) from None
    _check_strings(document, body)
    return document


async def read_body_capped(request: Request, limit: int | None) -> bytes:
    """Read the whole body, raising a 413 as soon as it exceeds `limit` bytes.

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
        f"(at least {size} bytes were sent).",
    )


class PrevalidatedBodyRequest(ServiceRequest):
    """A request whose `json()` returns the route's body model, when `parse_body` can build
    it straight from the bytes, and otherwise the JSON document as `ServiceRequest` does.

    FastAPI passes a model instance through its body validation unchanged, so the model
    is validated once. When `parse_body` returns None, FastAPI validates the document
    itself and reports its errors as for any other route.
    """

    def __init__(
        self, scope: Scope, receive: Receive, parse_body: Callable[[bytes], BaseModel | None]
    ) -> None:
        super().__init__(scope, receive)
        self._parse_body = parse_body

    async def json(self) -> Any:
        if not hasattr(self, "_model"):
            self._model = self._parse_body(await self.body())
        if self._model is not None:
            return self._model
        return await self.json_document()


class ServiceRoute(APIRoute):
    """An APIRoute whose handlers receive a `ServiceRequest`. It records the query
    parameters it accepts, so that `reject_unknown_query` can reject a misspelt one
    instead of letting it fall back to its default silently."""

    # Routes called by other systems with query strings of their own turn the check off.
    checks_query = True
    # Media types that a route sharing this one's method and path accepts instead of JSON,
    # which a 415 names.
    other_media_types: tuple[str, ...] = ()

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.accepted_query = _query_names(self) if self.checks_query else None
        self.repeatable_query = _query_names(self, repeatable=True) if self.checks_query else None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_json = self.body_field is not None

        async def handle(request: Request) -> Response:
            if takes_json:
                _require_json_content_type(request, self.other_media_types)
            return await handler(self.service_request(request))

        return handle

    def service_request(self, request: Request) -> ServiceRequest:
        return ServiceRequest(request.scope, request.receive)


class PrevalidatedBodyRoute(ServiceRoute):
    """A ServiceRoute that builds its body model with `parse_body` first (see
    `PrevalidatedBodyRequest`). Subclasses set `parse_body`."""

    @staticmethod
    def parse_body(body: bytes) -> BaseModel | None:
        raise NotImplementedError

    def service_request(self, request: Request) -> ServiceRequest:
        return PrevalidatedBodyRequest(request.scope, request.receive, self.parse_body)


class PlatformRoute(ServiceRoute):
    """A ServiceRoute for the URLs that survey platforms call, which may carry query
    parameters of the platform's or the user's own."""

    checks_query = False


def _takes_several(annotation: Any) -> bool:
    """Return whether a query parameter of this type takes a value each time it repeats."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_several(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_takes_several(argument) for argument in get_args(annotation))
    return (origin or annotation) in (list, tuple, set, frozenset)


def _query_names(route: APIRoute, *, repeatable: bool = False) -> frozenset[str]:
    """Return the query parameter names of `route` and of its dependencies, or with
    `repeatable` only those of a list type."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(
            field.alias
            for field in dependant.query_params
            if not repeatable or _takes_several(field.field_info.annotation)
        )
        pending.extend(dependant.dependencies)
    return frozenset(names)


def reject_unknown_query(request: Request) -> None:
    """Raise a 422 naming each query parameter that the request's route does not accept,
    and each one that it takes once but the request repeats. FastAPI would keep the last
    value of a repeated one silently.

    The authentication dependencies call it once the caller is known, so that a request
    without credentials gets its 401 first.
    """
    route = request.scope.get("route")
    if not isinstance(route, ServiceRoute) or route.accepted_query is None:
        return
    accepted = route.accepted_query
    unknown = sorted(set(request.query_params) - accepted)
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeatable = route.repeatable_query or frozenset()
    repeated = sorted(
        name
        for name, count in counts.items()
        if count > 1 and name in accepted and name not in repeatable
    )
    sentences = []
    errors = []
    if unknown:
        known = ", ".join(sorted(accepted)) if accepted else "none"
        sentences.append(
            f"Unknown query parameter {', '.join(map(quote_value, unknown))}; "
            f"{request.url.path} accepts: {known}."
        )
        errors += [
            InvalidField(
                location=f"query.{name}",
                message=f"{quote_value(name)} is not a query parameter of this route; "
                f"accepted: {known}.",
            )
            for name in unknown
        ]
    if repeated:
        sentences.append(
            f"Query parameter {', '.join(map(repr, repeated))} is given more than once; "
            "give it once."
        )
        errors += [
            InvalidField(
                location=f"query.{name}",
                message=f"{name!r} is given {counts[name]} times; give it once.",
            )
            for name in repeated
        ]
    if errors:
        raise UnprocessableError(" ".join(sentences), errors=errors)


def _require_json_content_type(request: Request, other_media_types: tuple[str, ...]) -> None:
    """Reject with 415 a body sent as anything but JSON to a route that reads JSON."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return  # FastAPI reports the missing or empty body itself.
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return
    accepted = " or ".join(("application/json", *other_media_types))
    raise HTTPException(
        status_code=415,
        detail=f"Content-Type {media_type or content_type!r} is not supported; "
        f"send the body as {accepted}.",
    )


class RejectNulMiddleware:
    """Reject with 422 a URL whose path or query contains a NUL character, which PostgreSQL
    text cannot store, before any route sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").lower()
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                response = problem_response(
                    Request(scope),
                    status=422,
                    code="validation-error",
                    title="Invalid request",
                    detail=f"The URL is invalid: {NUL_MESSAGE}.",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def template_for_path(scope: Scope) -> str:
    """Return the template of the API route whose pattern matches the request's path, for
    a request rejected before routing, or `none` when no route matches.

    The templates come from the OpenAPI document, once per app. Templates with fewer
    parameters are tried first, so a literal segment wins over a parameter in its place.
    """
    app = scope.get("app")
    if not isinstance(app, FastAPI):
        return NO_ROUTE
    state = app.state
    patterns: list[tuple[re.Pattern[str], str]] | None = getattr(state, "route_patterns", None)
    if patterns is None:
        templates = sorted(app.openapi().get("paths", {}), key=lambda path: (path.count("{"), path))
        patterns = []
        for template in templates:
            parts = re.split(r"(\{[^}]+\})", template)
            pattern = "".join(
                "[^/]+" if part.startswith("{") else re.escape(part) for part in parts
            )
            patterns.append((re.compile(pattern), template))
        state.route_patterns = patterns
    path = scope["path"]
    return next((template for pattern, template in patterns if pattern.fullmatch(path)), NO_ROUTE)


def route_template(scope: Scope) -> str:
    """Return the path template of the route that handled the request, such as
    `/v1/accounts/{external_id}`, or `none` when no route matched.

    A middleware that responds before routing may have stored the template under
    `ROUTE_TEMPLATE_KEY`.
    """
    stored = scope.get(ROUTE_TEMPLATE_KEY)
    if isinstance(stored, str):
        return stored
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Starlette's own routes (/docs, /openapi.json) set only the endpoint, and a mount (the
    # dashboard's static files) sets its app as the endpoint.
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    if endpoint is not None and app is not None:
        for candidate in getattr(app, "routes", ()):
            if endpoint in (getattr(candidate, "endpoint", None), getattr(candidate, "app", None)):
                return str(getattr(candidate, "path", NO_ROUTE))
    return NO_ROUTE
