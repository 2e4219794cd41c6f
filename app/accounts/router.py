from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from starlette.routing import Match
from starlette.types import Scope

from app.accounts import merges, revenue_csv
from app.accounts import service as account_service
from app.accounts.schemas import (
    AccountDetail,
    AccountMergeRequest,
    AccountMergeResult,
    AccountPut,
    AccountRead,
    RevenueImportResult,
    RevenueUpdateBatch,
    RevenueUpdateResult,
    parse_revenue_update_batch,
)
from app.db.session import SessionDep
from app.errors import InvalidField, UnprocessableError, problem_content
from app.idempotency.dependencies import Idempotency
from app.routing import (
    MAX_BODY_SCOPE_KEY,
    PrevalidatedBodyRoute,
    ServiceRoute,
    read_body_capped,
)
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import CurrentCaller, IngestTenant, ReadTenant

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
    responses={
        201: {"description": "The account was created.", "model": AccountDetail},
        409: problem_content("The account was merged into another; send changes to the survivor."),
    },
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


CSV_MEDIA_TYPE = "text/csv"


def _media_type(scope: Scope) -> tuple[str, str | None]:
    """Return the request's media type and charset parameter, lower-cased."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media_type, *parameters = value.decode("latin-1").lower().split(";")
            charset = None
            for parameter in parameters:
                key, _, text = parameter.strip().partition("=")
                if key == "charset":
                    charset = text.strip().strip('"')
            return media_type.strip(), charset
    return "", None


class CsvBodyRoute(ServiceRoute):
    """A route that matches only requests with a `text/csv` body, so that it can share its
    method and path with a JSON route registered after it."""

    # The Idempotency dependency leaves this body to the route, because it is not JSON.
    # The route hashes the bytes it read (`IdempotentWrite.for_body`).
    reads_raw_body = True

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.FULL and _media_type(scope)[0] != CSV_MEDIA_TYPE:
            return Match.NONE, {}
        return match, child_scope


# The query parameters of post_revenue_updates_csv.
CSV_OPTIONS = frozenset({"decimal", "thousands", "delimiter", "currency", "column", "on_error"})


async def post_revenue_updates_csv(
    request: Request,
    session: SessionDep,
    tenant: IngestTenant,
    decimal: Annotated[str, Query()] = ".",
    thousands: Annotated[str, Query()] = "none",
    delimiter: Annotated[str, Query()] = ",",
    currency: Annotated[str | None, Query()] = None,
    column: Annotated[list[str] | None, Query()] = None,
    on_error: Annotated[Literal["reject", "skip"], Query()] = "reject",
    *,
    idempotency: Idempotency,
) -> RevenueImportResult:
    charset = _media_type(request.scope)[1]
    if charset not in (None, "utf-8", "utf8"):
        raise HTTPException(
            status_code=415,
            detail=f"The CSV charset {charset!r} is not supported; send the file as UTF-8.",
        )
    options = revenue_csv.parse_options(
        decimal=decimal,
        thousands=thousands,
        delimiter=delimiter,
        currency=currency,
        columns=column or (),
        skip_invalid=on_error == "skip",
        location=lambda name: f"query.{name}",
    )

    # The body is read whole, at most REVCOV_MAX_BODY_BYTES, because the import reads the
    # file twice: once to check it and once to apply it.
    body = await read_body_capped(request, request.scope.get(MAX_BODY_SCOPE_KEY))
    keyed = await idempotency.for_body(body)
    return await keyed.run(
        RevenueImportResult,
        lambda: revenue_csv.import_revenue_csv(
            session,
            tenant,
            lambda: revenue_csv.decode_lines(body.splitlines(keepends=True)),
            options,
        ),
    )


# Registered before the JSON route, which handles every other media type.
router.add_api_route(
    "/v1/revenue-updates",
    post_revenue_updates_csv,
    methods=["POST"],
    route_class_override=CsvBodyRoute,
    include_in_schema=False,
)


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
    caller: CurrentCaller,
    external_id: ExternalIdPath,
    body: AccountMergeRequest,
) -> AccountMergeResult:
    return await merges.merge_account(
        session, tenant.id, external_id, body, actor_key_id=caller.api_key.id
    )


def reject_csv_options(request: Request, caller: CurrentCaller) -> None:
    """Reject the text/csv query parameters on a JSON body with a message that names the
    CSV body. It takes the caller so that the API key is checked first, and runs before
    the route's scope check, which would reject them as unknown parameters."""
    sent = sorted(set(request.query_params) & CSV_OPTIONS)
    if sent:
        raise UnprocessableError(
            "The query parameters of a CSV import apply only to a `Content-Type: text/csv` "
            "body; this body is JSON.",
            errors=[
                InvalidField(
                    location=f"query.{name}",
                    message=f"{name!r} is accepted only with a text/csv body; remove it.",
                )
                for name in sent
            ],
        )


class RevenueUpdatesRoute(PrevalidatedBodyRoute):
    """Validates a batch of revenue updates straight from the body's bytes when it can."""

    parse_body = staticmethod(parse_revenue_update_batch)
    # `CsvBodyRoute` takes the same method and path with a CSV body.
    other_media_types = (CSV_MEDIA_TYPE,)


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


router.add_api_route(
    "/v1/revenue-updates",
    post_revenue_updates,
    methods=["POST"],
    summary="Apply up to 10,000 revenue updates in one transaction",
    dependencies=[Depends(reject_csv_options)],
    responses={409: problem_content("A request with the same Idempotency-Key is in progress.")},
    route_class_override=RevenueUpdatesRoute,
)
