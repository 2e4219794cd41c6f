from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.db.session import SessionDep
from app.privacy import service as privacy_service
from app.privacy.schemas import AuditEventRead, ErasureRequest, ErasureResult
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import AdminTenant, CurrentCaller

router = APIRouter(prefix="/v1", route_class=ServiceRoute)


# Deleting a response is recorded in the audit log, so it lives here with erasure.
@router.delete(
    "/responses/{source}/{response_id}",
    tags=["responses"],
    summary="Delete a response, such as a test answer or spam",
    description=(
        "Removes the response; every report, for any period, leaves it out from now on. "
        "The stored webhook deliveries stay, so replaying one, or a newer version sent by "
        "the platform, stores the response again."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    # A bare response, so the 204 carries no Content-Type for a body it does not have.
    response_class=Response,
)
async def delete_response(
    session: SessionDep,
    tenant: AdminTenant,
    caller: CurrentCaller,
    source: Annotated[str, Path(max_length=64)],
    response_id: Annotated[str, Path(max_length=200)],
) -> None:
    await privacy_service.delete_response(
        session, tenant.id, source, response_id, actor_key_id=caller.api_key.id
    )


@router.post(
    "/privacy/erase",
    tags=["privacy"],
    summary="Erase a person's personal data (right to erasure)",
    description=(
        "Removes the email and comment of the person's responses, the body and headers of "
        "every stored webhook delivery that carried one of them or mentions the email, and "
        "the person's contact with its links. Scores stay with their accounts, so coverage "
        "does not change. The audit log records the erasure with the SHA-256 digest of the "
        "lower-cased email, never the email. Erase the data at the survey platform too: "
        "responses it sends later are stored again."
    ),
)
async def erase(
    session: SessionDep, tenant: AdminTenant, caller: CurrentCaller, body: ErasureRequest
) -> ErasureResult:
    return await privacy_service.erase_person(
        session, tenant.id, body.email, actor_key_id=caller.api_key.id
    )


@router.get(
    "/audit-events",
    tags=["privacy"],
    summary="List administrative actions, oldest first",
    description="Deletions, erasures, API keys created and revoked, webhook endpoints created "
    "and changed, and tenant settings changed. No entry contains a secret or erased data.",
)
async def list_audit_events(
    session: SessionDep, tenant: AdminTenant, limit: Limit = 100, cursor: Cursor = None
) -> Page[AuditEventRead]:
    return await privacy_service.list_audit_events(session, tenant.id, limit=limit, cursor=cursor)
