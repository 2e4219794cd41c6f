from datetime import datetime

from pydantic import Field

from app.contacts.models import ContactRole
from app.schemas import ReadModel, WriteModel


class ContactPut(WriteModel):
    """A link from the contact to one account; a link to another account is added beside it."""

    account_external_id: str = Field(
        min_length=1, max_length=200, description="The account's id in your CRM."
    )
    role: ContactRole | None = Field(default=None, description="The person's role there.")


class ContactLinkRead(ReadModel):
    account_external_id: str
    role: ContactRole | None
    created_at: datetime
    updated_at: datetime


class ContactRead(ReadModel):
    email: str = Field(description="Lower-cased.")
    accounts: list[ContactLinkRead] = Field(
        description="Sorted by account. A contact linked to one account matches the responses "
        "with its email to that account; linked to several, it matches none of them."
    )
