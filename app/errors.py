"""The application error base and the RFC 9457 `application/problem+json` renderer.

Every 4xx and 5xx response body of the service is a problem document with `type`, `title`,
`status` and `detail`. A 422 also lists the invalid fields under `errors`.
"""

import re
from collections.abc import Sequence
from difflib import get_close_matches
from typing import Any, get_args, get_origin

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = structlog.get_logger()

PROBLEM_MEDIA_TYPE = "application/problem+json"


class InvalidField(BaseModel):
    """One invalid input value: where it is, what is wrong and what is accepted."""

    location: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[InvalidField] | None = None


class AppError(Exception):
    """Base of every error the service raises on purpose; rendered as problem+json."""

    status_code = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[InvalidField] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = headers


class NotFoundError(AppError):
    status_code = 404
    code = "not-found"
    title = "Not found"


class ForbiddenError(AppError):
    status_code = 403
    code = "forbidden"
    title = "Forbidden"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class UnprocessableError(AppError):
    status_code = 422
    code = "validation-error"
    title = "Invalid request"


class UnauthorizedError(AppError):
    status_code = 401
    code = "unauthorized"
    title = "Unauthorized"


class ServiceUnavailableError(AppError):
    status_code = 503
    code = "service-unavailable"
    title = "Service unavailable"


# Longer values are cut in error messages, so a problem document stays small whatever the
# client sent.
MAX_QUOTED_VALUE = 80


def _cut(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, ending a cut text with "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote_value(value: object) -> str:
    """Quote a client's value for an error message, cut to `MAX_QUOTED_VALUE` characters."""
    return _cut(repr(value), MAX_QUOTED_VALUE)


def invalid_query(location: str, value: str, reason: str) -> UnprocessableError:
    """Build the 422 for the query parameter at `location` (such as `query.period`)."""
    name = location.split(".")[-1]
    return UnprocessableError(
        f"Invalid {name} {quote_value(value)}: {reason}.",
        errors=[InvalidField(location=location, message=f"{reason} (got {quote_value(value)})")],
    )


# Bounds of a problem document, since a client's value, a field name, the path or the
# number of invalid fields can each be as large as the request. The errors are listed
# until their JSON reaches `MAX_ERRORS_BYTES`, counted after escaping, because a control
# character takes 6 bytes in JSON.
MAX_LISTED_ERRORS = 100
MAX_ERROR_TEXT = 300
MAX_ERRORS_BYTES = 8_192
MAX_DETAIL = 1_000
MAX_INSTANCE = 200


def _bounded_errors(errors: Sequence[InvalidField]) -> list[InvalidField]:
    """Return the errors that fit the bounds above, in order, each cut to `MAX_ERROR_TEXT`
    characters. The first error is always listed."""
    listed: list[InvalidField] = []
    size = 0
    for error in errors[:MAX_LISTED_ERRORS]:
        bounded = InvalidField(
            location=_cut(error.location, MAX_ERROR_TEXT),
            message=_cut(error.message, MAX_ERROR_TEXT),
        )
        size += len(bounded.model_dump_json())
        if listed and size > MAX_ERRORS_BYTES:
            break
        listed.append(bounded)
    return listed


def problem_type(code: str) -> str:
    return f"urn:revcov:problem:{code}"


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: Sequence[InvalidField] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    detail = _cut(detail, MAX_DETAIL)
    listed = None
    if errors is not None:
        listed = _bounded_errors(errors)
        if len(errors) > len(listed):
            detail += f" The first {len(listed)} of {len(errors)} errors are listed."
    problem = Problem(
        type=problem_type(code),
        title=title,
        status=status,
        detail=detail,
        instance=_cut(request.url.path, MAX_INSTANCE),
        errors=listed,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def format_location(location: Sequence[int | str]) -> str:
    """Render a pydantic error location as a dotted path: `body.responses[3].score`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# Fields whose values are never quoted back in error messages, which are also logged.
# An API base URL may carry a user name and password until its check rejects them.
SECRET_FIELDS = frozenset(
    {"secret", "secrets", "token", "api_token", "api_key", "password", "api_base_url"}
)


# The accepted form of a decimal field, for a value that pydantic cannot read as one.
DECIMAL_FORM = (
    'expected a decimal number such as "1234.56", with "." as the decimal separator and '
    'no "," between digits, spaces or currency symbols'
)
# The pydantic error types of a body that is not the JSON object the route expects.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def _route_query_description(route: object, name: str) -> str | None:
    """Return the description of the query parameter `name` of `route` or its dependencies."""
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        for field in dependant.query_params:
            if field.alias == name:
                description = field.field_info.description
                return description.rstrip(".") if description else None
        pending.extend(dependant.dependencies)
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """Return the pydantic model in a field's type: the type itself, or the item or member
    type of a list or an optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        model = _model_in(argument)
        if model is not None:
            return model
    return None


def _body_model(route: object) -> type[BaseModel] | None:
    """Return the pydantic model of the route's body, or None when it takes none."""
    body_field = getattr(route, "body_field", None)
    return _model_in(getattr(getattr(body_field, "field_info", None), "annotation", None))


def _batch_field(route: object) -> str | None:
    """Return the name of the list field when the route's body is a batch: an object whose
    only field is a list, such as `{"updates": [...]}`."""
    model = _body_model(route)
    if model is None or len(model.model_fields) != 1:
        return None
    [(name, field)] = model.model_fields.items()
    if get_origin(field.annotation) is list or field.annotation is list:
        return field.alias or name
    return None


def _body_field_names(route: object, parent: tuple[Any, ...]) -> list[str]:
    """Return the field names that the route's body accepts at `parent`, such as
    `("body", "updates", 0)`, or an empty list when no model is at that place."""
    if parent[:1] != ("body",):
        return []
    model = _body_model(route)
    for part in parent[1:]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _missing_names(errors: Sequence[Any]) -> dict[tuple[Any, ...], list[str]]:
    """Map each location to the names of the fields missing directly under it."""
    missing: dict[tuple[Any, ...], list[str]] = {}
    for error in errors:
        location = tuple(error.get("loc", ()))
        if error.get("type") == "missing" and location and isinstance(location[-1], str):
            missing.setdefault(location[:-1], []).append(location[-1])
    return missing


def validation_fields(errors: Sequence[Any], route: object = None) -> list[InvalidField]:
    """Turn pydantic's errors into invalid fields, each saying what the field accepts.

    With the request's `route`, a missing query parameter is described as the API docs
    describe it, and a JSON array sent where the route takes an object names the field
    that takes the array.
    """
    missing = _missing_names(errors)
    fields = []
    for error in errors:
        raw_location = tuple(error.get("loc", ()))
        location = format_location(raw_location)
        secret = any(part in SECRET_FIELDS for part in raw_location)
        kind = error.get("type")
        message = str(error.get("msg", "invalid value"))
        if kind == "value_error":
            # Our validators name the value themselves; drop pydantic's "Value error, ".
            message = message.removeprefix("Value error, ")
        elif kind == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
            name = raw_location[-1] if raw_location else None
            parent = raw_location[:-1]
            known = _body_field_names(route, parent) or missing.get(parent, [])
            close = get_close_matches(str(name), known, n=1)
            if close:
                message = f"unknown field; did you mean {close[0]!r}?"
        elif kind == "missing":
            message = "field required"
            description = None
            if raw_location[:1] == ("query",) and len(raw_location) == 2:
                description = _route_query_description(route, str(raw_location[1]))
            if description:
                message = f"field required. {description}."
        elif kind == "json_invalid":
            reason = error.get("ctx", {}).get("error", "malformed JSON")
            # FastAPI puts the decoder's offset (from 0) after "body".
            offset = raw_location[1:2]
            where = ""
            if offset and isinstance(offset[0], int):
                where = f" at character {offset[0] + 1}"
            location = "body"
            message = f"invalid JSON{where}: {reason}"
        elif (
            kind in _NOT_AN_OBJECT
            and raw_location == ("body",)
            and isinstance(error.get("input"), list)
        ):
            message = "expected a JSON object, got an array"
            name = _batch_field(route)
            if name:
                message += f'; send the items as {{"{name}": [...]}}'
        elif kind == "timezone_aware" and not secret:
            message = (
                "expected a timestamp with a UTC offset, such as 2026-01-01T00:00:00Z or "
                f"2026-01-01T09:00:00+09:00 (got {quote_value(error.get('input'))})"
            )
        elif kind == "decimal_parsing" and not secret:
            message = f"{DECIMAL_FORM} (got {quote_value(error.get('input'))})"
        elif "input" in error and not secret:
            message = f"{message} (got {quote_value(error['input'])})"
        fields.append(InvalidField(location=location, message=message))
    return fields


# Each run of text without spaces that contains an @ or its URL encoding %40. A detail
# quotes the request's values, and an account id or a path can be an email address,
# also one without a dot in its domain, quoted or percent-encoded.
_EMAIL_LIKE = re.compile(r"\S*(?:@|%40)\S*", re.IGNORECASE)


def _mask_emails(text: str) -> str:
    """Replace each run of text that may contain an email address with `[email]`, for logs."""
    return _EMAIL_LIKE.sub("[email]", text)


async def _render_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    detail = _mask_emails(exc.detail)
    if exc.status_code >= 500:
        log.error("request.failed", error=exc.code, detail=detail)
    else:
        log.info("request.rejected", status=exc.status_code, error=exc.code, detail=detail)
    return problem_response(
        request,
        status=exc.status_code,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _render_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = validation_fields(exc.errors(), request.scope.get("route"))
    summary = "; ".join(f"{field.location}: {field.message}" for field in fields[:3])
    if len(fields) > 3:
        summary += f"; and {len(fields) - 3} more"
    log.info("request.rejected", status=422, error="validation-error", fields=len(fields))
    return problem_response(
        request,
        status=422,
        code="validation-error",
        title="Invalid request",
        detail=summary or "The request is invalid.",
        errors=fields,
    )


_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


async def _render_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}; see /docs for the API."
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = (
            f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}."
        )
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        headers=headers or None,
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """List the methods some route accepts on this path. Starlette's own `Allow` header
    names only the first matching route's, but GET and PUT of one path are two routes."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]


def sqlstate(exc: DBAPIError) -> str:
    """Return the SQLSTATE of a database error, or an empty string without one."""
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def driver_error(exc: DBAPIError) -> str:
    """Return the name of the driver's own exception, such as asyncpg's
    QueryCanceledError, which SQLAlchemy's asyncpg adapter wraps in a generic `Error`."""
    cause = exc.orig.__cause__ if exc.orig is not None else None
    return type(cause if cause is not None else exc.orig).__name__


# SQLSTATEs of transactions that PostgreSQL aborted because of a concurrent one.
_CONFLICT_SQLSTATES = {"40P01", "40001"}
# SQLSTATEs of a server that is shutting down or starting up (class 57P), out of
# connection slots (53300), or of a broken connection (class 08). asyncpg reports "the
# database system is shutting down" (57P03) as a plain DBAPIError, not an OperationalError.
# A read-only transaction (25006) comes from a standby, as after a failover that has not
# reached the service's DNS yet, or from a user whose transactions are read-only.
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300", "25006"}
# SQLSTATEs of a statement cancelled by `statement_timeout` (57014) or of a lock not
# granted within `lock_timeout` (55P03): the database is too busy for the request now.
_TIMEOUT_SQLSTATES = {"57014", "55P03"}


# Failures after which the transaction wrote nothing and a retry can succeed: the
# SQLSTATEs, the log event, the problem code, its detail and the Retry-After seconds.
_RETRYABLE_FAILURES = (
    (
        _CONFLICT_SQLSTATES,
        "database.conflict",
        "concurrent-update",
        "The request conflicted with a concurrent one and nothing was written; retry it.",
        "1",
    ),
    (
        _TIMEOUT_SQLSTATES,
        "database.timeout",
        "database-timeout",
        "The database did not finish the request in time and nothing was written; retry it later.",
        "5",
    ),
)


async def render_database_error(request: Request, exc: Exception) -> JSONResponse:
    """Turn database failures into 503 (retry), 422 (a value PostgreSQL rejected) or 500."""
    if isinstance(exc, DBAPIError):
        state = sqlstate(exc)
        if state.startswith("22"):
            # Class 22, data exception: a value that validation let through.
            log.warning("request.invalid_value", error=driver_error(exc), sqlstate=state)
            return problem_response(
                request,
                status=422,
                code="validation-error",
                title="Invalid request",
                detail="A value in the request is out of range or not storable as text; "
                "check numbers, timestamps and text for unusual characters.",
            )
        for states, event, code, detail, retry_after in _RETRYABLE_FAILURES:
            if state in states:
                log.warning(event, error=driver_error(exc), sqlstate=state)
                return problem_response(
                    request,
                    status=503,
                    code=code,
                    title="Service unavailable",
                    detail=detail,
                    headers={"Retry-After": retry_after},
                )
        unavailable = state in _UNAVAILABLE_SQLSTATES or state.startswith("08")
        if not (unavailable or exc.connection_invalidated or isinstance(exc, OperationalError)):
            raise exc
    if isinstance(exc, SQLAlchemyTimeoutError):
        log.warning("database.pool_exhausted")
        detail = "All database connections are busy; retry after a few seconds."
    else:
        # One line without the traceback: while the database is down every request ends
        # here, and formatting thousands of identical tracebacks would slow the service.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.error(
            "database.unavailable",
            error=type(exc).__name__,
            reason=reason[0][:200] if reason else "",
        )
        detail = "The database is unavailable; retry after a few seconds."
    return problem_response(
        request,
        status=503,
        code="service-unavailable",
        title="Service unavailable",
        detail=detail,
        headers={"Retry-After": "5"},
    )


def internal_error_response(request: Request) -> JSONResponse:
    return problem_response(
        request,
        status=500,
        code="internal-error",
        title="Internal server error",
        detail="The server failed to handle the request; the error is logged with the "
        "request id in the X-Request-ID header.",
    )


def cancelled_response(request: Request) -> JSONResponse:
    """Build the 503 for a request the server cancelled as it stopped."""
    return problem_response(
        request,
        status=503,
        code="service-unavailable",
        title="Service unavailable",
        detail="The service stopped before it finished the request; send it again.",
        headers={"Retry-After": "1"},
    )


def problem_content(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# OpenAPI entries for the problem documents routes can return.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_content("The body cannot be parsed as the content type it declares."),
    401: problem_content("Missing, invalid or revoked API key."),
    403: problem_content("The API key lacks the scope the route needs; `detail` names it."),
    404: problem_content("Not found, or it belongs to another tenant."),
    422: problem_content("Invalid request; `errors` lists each invalid field."),
    413: problem_content("The body is larger than the limit."),
    429: problem_content("Over the rate limit; retry after `Retry-After` seconds."),
    503: problem_content("The database is unavailable; retry after `Retry-After` seconds."),
}


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _render_app_error)
    app.add_exception_handler(RequestValidationError, _render_validation_error)
    app.add_exception_handler(StarletteHTTPException, _render_http_error)
    app.add_exception_handler(DBAPIError, render_database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, render_database_error)
    app.add_exception_handler(OSError, render_database_error)
    # RequestIdMiddleware logs any other exception and returns a 500, because it still
    # has the request id.
