from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.contacts import service as contact_service
from app.contacts.dependencies import ContactEmail
from app.contacts.schemas import ContactPut, ContactRead
from app.db.session import SessionDep
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import IngestTenant, ReadTenant

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], route_class=ServiceRoute)

AccountExternalIdPath = Annotated[
    str, Path(min_length=1, max_length=200, description="The account's id in your CRM.")
]


@router.get("", summary="List contacts with their accounts, by email")
async def list_contacts(
    session: SessionDep, tenant: ReadTenant, limit: Limit = 100, cursor: Cursor = None
) -> Page[ContactRead]:
    return await contact_service.list_contacts(session, tenant.id, limit=limit, cursor=cursor)


@router.get("/{email}", summary="Get a contact with its accounts")
async def get_contact(session: SessionDep, tenant: ReadTenant, email: ContactEmail) -> ContactRead:
    return await contact_service.get_contact(session, tenant.id, email)


@router.put(
    "/{email}",
    summary="Link a contact to an account, or set the role of that link",
    description=(
        "Naming another account adds a second link; the contact keeps the first. A contact "
        "linked to several accounts matches none of its responses, so they stay unmatched "
        "instead of counting for two accounts. Stored responses with this email are matched "
        "again at once."
    ),
    responses={201: {"description": "The link is new.", "model": ContactRead}},
)
async def put_contact(
    session: SessionDep,
    tenant: IngestTenant,
    email: ContactEmail,
    body: ContactPut,
    response: Response,
) -> ContactRead:
    contact, created = await contact_service.put_contact(session, tenant.id, email, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return contact


@router.delete(
    "/{email}/accounts/{account_external_id}",
    summary="Remove a contact's link to one account",
    status_code=status.HTTP_204_NO_CONTENT,
    # A bare response, so the 204 carries no Content-Type for a body it does not have.
    response_class=Response,
)
async def delete_contact_link(
    session: SessionDep,
    tenant: IngestTenant,
    email: ContactEmail,
    account_external_id: AccountExternalIdPath,
) -> None:
    await contact_service.unlink_contact(session, tenant.id, email, account_external_id)
