from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.db.session import SessionDep
from app.errors import problem_content
from app.idempotency.dependencies import Idempotency
from app.reports.dependencies import OptionalPeriod
from app.responses import service as response_service
from app.responses.schemas import (
    AssignmentIn,
    ResponseBatch,
    ResponseRead,
    ResponseWriteResult,
    UnmatchedResponseRead,
)
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import IngestTenant, ReadTenant

router = APIRouter(prefix="/v1/responses", tags=["responses"], route_class=ServiceRoute)


@router.post(
    "",
    summary="Store up to 10,000 survey responses in the service's own format",
    responses={409: problem_content("A request with the same Idempotency-Key is in progress.")},
)
async def post_responses(
    session: SessionDep, tenant: IngestTenant, batch: ResponseBatch, idempotency: Idempotency
) -> ResponseWriteResult:
    return await idempotency.run(
        ResponseWriteResult,
        lambda: response_service.write_responses(session, tenant.id, batch.responses),
    )


@router.get("", summary="List stored responses")
async def list_responses(
    session: SessionDep,
    tenant: ReadTenant,
    period: OptionalPeriod,
    account: Annotated[
        str | None, Query(description="Only responses matched to this account (external id).")
    ] = None,
    source: Annotated[str | None, Query(description="Only responses from this source.")] = None,
    matched: Annotated[
        bool | None, Query(description="true: matched to an account; false: unmatched.")
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ResponseRead]:
    return await response_service.list_responses(
        session,
        tenant.id,
        account_external_id=account,
        source=source,
        period=period,
        matched=matched,
        limit=limit,
        cursor=cursor,
    )


SourcePath = Annotated[str, Path(max_length=64)]
ResponseIdPath = Annotated[str, Path(max_length=200)]


@router.get(
    "/unmatched",
    summary="List responses that count for no account, with the reason",
    description=(
        "A response's account is found by, in order: the account id it carried, the "
        "contact with its email when linked to one account, and the one account that lists "
        "its email's domain. A contact or domain of several accounts matches nothing. "
        "Responses are matched as soon as such an account, contact or domain is added."
    ),
)
async def list_unmatched(
    session: SessionDep, tenant: ReadTenant, limit: Limit = 100, cursor: Cursor = None
) -> Page[UnmatchedResponseRead]:
    return await response_service.list_unmatched(session, tenant.id, limit=limit, cursor=cursor)


@router.get("/{source}/{response_id}", summary="Get one response as stored")
async def get_response(
    session: SessionDep, tenant: ReadTenant, source: SourcePath, response_id: ResponseIdPath
) -> ResponseRead:
    return await response_service.get_response(session, tenant.id, source, response_id)


@router.post(
    "/{source}/{response_id}/assign",
    summary="Assign a response to an account by hand",
    description=(
        "The assignment wins over the account id, contact and domain rules and is kept "
        "when they change or a newer version of the response arrives. Send "
        "`account_external_id: null` to let the rules decide again."
    ),
)
async def assign_response(
    session: SessionDep,
    tenant: IngestTenant,
    source: SourcePath,
    response_id: ResponseIdPath,
    body: AssignmentIn,
) -> ResponseRead:
    return await response_service.assign_account(
        session, tenant.id, source, response_id, body.account_external_id
    )
