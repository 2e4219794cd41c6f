from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.db.session import SessionDep
from app.reports.dependencies import OptionalPeriod
from app.responses import service as response_service
from app.responses.schemas import ResponseBatch, ResponseRead, ResponseWriteResult
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import CurrentTenant

router = APIRouter(prefix="/v1/responses", tags=["responses"], route_class=ServiceRoute)


@router.post("", summary="Store up to 10,000 survey responses in the service's own format")
async def post_responses(
    session: SessionDep, tenant: CurrentTenant, batch: ResponseBatch
) -> ResponseWriteResult:
    return await response_service.write_responses(session, tenant.id, batch.responses)


@router.get("", summary="List stored responses")
async def list_responses(
    session: SessionDep,
    tenant: CurrentTenant,
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


@router.get("/{source}/{response_id}", summary="Get one response as stored")
async def get_response(
    session: SessionDep,
    tenant: CurrentTenant,
    source: Annotated[str, Path(max_length=64)],
    response_id: Annotated[str, Path(max_length=200)],
) -> ResponseRead:
    return await response_service.get_response(session, tenant.id, source, response_id)
