from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.accounts import merges
from app.accounts import service as account_service
from app.accounts.schemas import (
    AccountDetail,
    AccountMergeRequest,
    AccountMergeResult,
    AccountPut,
    AccountRead,
    RevenueUpdateBatch,
    RevenueUpdateResult,
)
from app.db.session import SessionDep
from app.errors import problem_content
from app.idempotency.dependencies import Idempotency
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import IngestTenant, ReadTenant

router = APIRouter(tags=["accounts"], route_class=ServiceRoute)

ExternalIdPath = Annotated[
    str, Path(min_length=1, max_length=200, description="The account's id in your CRM.")
]


@router.get("/v1/accounts", summary="List accounts with their current revenue")
async def list_accounts(
    session: SessionDep, tenant: ReadTenant, limit: Limit = 100, cursor: Cursor = None
) -> Page[AccountRead]:
    return await account_service.list_accounts(session, tenant, limit=limit, cursor=cursor)


@router.get(
    "/v1/accounts/{external_id}",
    summary="Get an account with its current revenue and revenue history",
)
async def get_account(
    session: SessionDep, tenant: ReadTenant, external_id: ExternalIdPath
) -> AccountDetail:
    return await account_service.get_account(session, tenant, external_id)


@router.put(
    "/v1/accounts/{external_id}",
    summary="Create or replace an account, optionally with a revenue record",
    responses={201: {"description": "The account was created.", "model": AccountDetail}},
)
async def put_account(
    session: SessionDep,
    tenant: IngestTenant,
    external_id: ExternalIdPath,
    body: AccountPut,
    response: Response,
) -> AccountDetail:
    account, created = await account_service.put_account(session, tenant, external_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return account


@router.post(
    "/v1/accounts/{external_id}/merge",
    summary="Merge an account into a surviving account, as a CRM merge did",
    description=(
        "Moves the account's responses, contact links, domains and children to the "
        "survivor (`into`, or the account it was itself merged into). The old external id "
        "keeps resolving to the survivor for later deliveries, responses and revenue "
        "updates. Reports count the merged-away account in the revenue base for periods "
        "whose revenue instant is before `effective_at`, with its own responses, and leave "
        "it out from then on. Sending the same merge again changes nothing "
        "(`replayed: true`); another merge of a merged-away account gets 409. Recorded in "
        "the audit log."
    ),
    responses={
        409: problem_content("The account was merged away before into another account."),
        422: problem_content("`into` is unknown, or is the account itself."),
    },
)
async def merge_account(
    session: SessionDep,
    tenant: IngestTenant,
    external_id: ExternalIdPath,
    body: AccountMergeRequest,
) -> AccountMergeResult:
    return await merges.merge_account(session, tenant.id, external_id, body)


@router.post(
    "/v1/revenue-updates",
    summary="Apply up to 10,000 revenue updates in one transaction",
    responses={409: problem_content("A request with the same Idempotency-Key is in progress.")},
)
async def post_revenue_updates(
    session: SessionDep,
    tenant: IngestTenant,
    batch: RevenueUpdateBatch,
    idempotency: Idempotency,
) -> RevenueUpdateResult:
    return await idempotency.run(
        RevenueUpdateResult,
        lambda: account_service.apply_revenue_updates(session, tenant, batch),
    )
