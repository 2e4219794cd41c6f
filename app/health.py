"""The service index and its liveness and readiness probes."""

from typing import Literal

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.db.migrations import (
    REVISION_ID,
    current_revision,
    head_revision,
    known_revisions,
)

log = structlog.get_logger()

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    database: Literal["ok", "unreachable", "read_only"]
    schema_revision: str | None
    expected_revision: str | None


class ServiceIndex(BaseModel):
    """The service's name and version, and the paths of its documentation and probes."""

    service: Literal["revcov"]
    version: str
    docs: str
    redoc: str
    openapi: str
    dashboard: str
    health: str
    readiness: str


@router.get("/", summary="The service's version and where its documentation is")
async def index() -> ServiceIndex:
    return ServiceIndex(
        service="revcov",
        version=__version__,
        docs="/docs",
        redoc="/redoc",
        openapi="/openapi.json",
        dashboard="/dashboard",
        health="/healthz",
        readiness="/readyz",
    )


@router.get("/healthz", summary="Whether the process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Whether the database is reachable and migrated to the newest revision",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready."}},
)
async def readyz(request: Request) -> JSONResponse:
    engine: AsyncEngine = request.app.state.engine
    expected = head_revision()
    try:
        async with engine.connect() as connection:
            # First, because reading an odd version table can abort the transaction.
            read_only = await connection.scalar(text("SHOW transaction_read_only")) == "on"
            revision = await current_revision(connection)
    except (SQLAlchemyError, OSError) as error:
        log.warning("readiness.database_unreachable", error=type(error).__name__)
        body = Readiness(
            ready=False, database="unreachable", schema_revision=None, expected_revision=expected
        )
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})

    # A revision this release does not know comes from a newer release's migrations, run
    # before that release's replicas replace this one's. This process stays ready, so a
    # rolling upgrade does not take every old replica out of service at once.
    newer = (
        revision is not None
        and REVISION_ID.fullmatch(revision) is not None
        and revision not in known_revisions()
    )
    # A standby accepts no writes, so a replica connected to one after a failover leaves
    # the load balancer until its connections reach the new primary.
    ready = (revision == expected or newer) and not read_only
    body = Readiness(
        ready=ready,
        database="read_only" if read_only else "ok",
        schema_revision=revision,
        expected_revision=expected,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


# Uptime monitors often send HEAD, and FastAPI returns 405 for a HEAD to a GET route. Each
# HEAD route returns its GET route's response, so its status and headers match GET's
# (Content-Length included), and the server sends them without the body.
@router.head(
    "/",
    summary="Whether the service answers",
    response_class=Response,
    responses={200: {"description": "The service answers."}},
)
async def index_head() -> Response:
    return JSONResponse((await index()).model_dump())


@router.head(
    "/healthz",
    summary="Whether the process is alive, without a body",
    response_class=Response,
    responses={200: {"description": "The process is alive."}},
)
async def healthz_head() -> Response:
    return JSONResponse((await healthz()).model_dump())


@router.head(
    "/readyz",
    summary="Whether the service is ready, without a body",
    response_class=Response,
    responses={
        200: {"description": "Ready."},
        503: {"description": "The database is unreachable or not migrated."},
    },
)
async def readyz_head(request: Request) -> Response:
    return await readyz(request)
