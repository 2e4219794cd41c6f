"""Contacts: people known by email, each linked to one or more accounts.

A contact linked to exactly one account matches the responses with its email to that
account. Every change of links matches that email's stored responses again.
"""

import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as account_service
from app.contacts import repository
from app.contacts.errors import ContactNotFoundError
from app.contacts.schemas import ContactLinkRead, ContactPut, ContactRead
from app.responses import service as response_service
from app.schemas import Page, decode_cursor, encode_cursor

log = structlog.get_logger()


def _contact_reads(rows: Sequence[Row[*tuple[Any, ...]]]) -> list[ContactRead]:
    """Group link rows, sorted by email, into one contact per email."""
    contacts = []
    for email, links in itertools.groupby(rows, key=lambda row: row[0].email):
        accounts = [
            ContactLinkRead(
                account_external_id=account_external_id,
                role=link.role,
                created_at=link.created_at,
                updated_at=link.updated_at,
            )
            for link, account_external_id in links
        ]
        contacts.append(ContactRead(email=email, accounts=accounts))
    return contacts


async def get_contact(session: AsyncSession, tenant_id: uuid.UUID, email: str) -> ContactRead:
    rows = await repository.get_links(session, tenant_id, email)
    if not rows:
        raise ContactNotFoundError("No contact with this email.")
    return _contact_reads(rows)[0]


async def list_contacts(
    session: AsyncSession, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[ContactRead]:
    after = decode_cursor(cursor, str) if cursor else None
    rows = await repository.list_links(session, tenant_id, after_email=after, limit=limit + 1)
    contacts = _contact_reads(rows)
    next_cursor = encode_cursor(contacts[limit - 1].email) if len(contacts) > limit else None
    return Page[ContactRead](items=contacts[:limit], next_cursor=next_cursor)


async def put_contact(
    session: AsyncSession, tenant_id: uuid.UUID, email: str, body: ContactPut
) -> tuple[ContactRead, bool]:
    """Link the contact to the account, keeping its other links, or set that link's role.

    A merged-away account stands for its survivor.

    Returns the contact and whether the link is new.
    """
    account_id = await account_service.resolve_account_id(
        session, tenant_id, body.account_external_id
    )
    # Before the link is written: its trigger refreshes the quarter state of the email's
    # responses, and the lock order must be the one response writes use.
    await response_service.lock_account_resolution(session, tenant_id)
    stored_email, created = await repository.upsert_link(
        session, tenant_id, email, account_id, body.role
    )
    if created:
        await response_service.resolve_accounts(session, tenant_id, email_keys=[stored_email])
        log.info("contact.linked", tenant_id=str(tenant_id), account_id=account_id)
    return await get_contact(session, tenant_id, email), created


async def unlink_contact(
    session: AsyncSession, tenant_id: uuid.UUID, email: str, account_external_id: str
) -> None:
    await response_service.lock_account_resolution(session, tenant_id)
    stored_email = await repository.delete_link(session, tenant_id, email, account_external_id)
    if stored_email is None:
        raise ContactNotFoundError(
            f"The contact with this email is not linked to an account {account_external_id!r}."
        )
    await response_service.resolve_accounts(session, tenant_id, email_keys=[stored_email])
    log.info("contact.unlinked", tenant_id=str(tenant_id))


async def delete_contact(session: AsyncSession, tenant_id: uuid.UUID, email: str) -> int:
    """Remove the contact with all its links; return the number of links removed."""
    await response_service.lock_account_resolution(session, tenant_id)
    removed = await repository.delete_contact(session, tenant_id, email)
    if removed:
        await response_service.resolve_accounts(session, tenant_id, email_keys=removed[:1])
    return len(removed)
