import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, and_, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Account
from app.contacts.models import Contact
from app.db.base import INSERTED


def _email_key(email: str) -> Any:
    """Build the SQL expression that lower-cases and trims the email, the form contacts are
    stored in.

    PostgreSQL lowers it rather than Python, so that it equals `responses.email_key` also
    for letters outside ASCII, whose lower case depends on the database's collation.
    """
    return func.lower(func.btrim(email))


def _links(tenant_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    """Contact links of one tenant with the external id of their account."""
    return (
        select(Contact, Account.external_id)
        .join(
            Account,
            and_(Account.tenant_id == Contact.tenant_id, Account.id == Contact.account_id),
        )
        .where(Contact.tenant_id == tenant_id)
    )


async def upsert_link(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    email: str,
    account_id: int,
    role: str | None,
) -> tuple[str, bool]:
    """Link the contact to the account or set the role of that link.

    Returns the stored (lower-cased) email and whether the link is new.
    """
    values = insert(Contact).values(
        tenant_id=tenant_id, email=_email_key(email), account_id=account_id, role=role
    )
    role_changed = Contact.role.is_distinct_from(values.excluded.role)
    statement = values.on_conflict_do_update(
        index_elements=[Contact.tenant_id, Contact.email, Contact.account_id],
        set_={
            "role": values.excluded.role,
            "updated_at": case((role_changed, func.now()), else_=Contact.updated_at),
        },
    ).returning(Contact.email, INSERTED)
    stored_email, inserted = (await session.execute(statement)).one()
    return stored_email, bool(inserted)


async def get_links(
    session: AsyncSession, tenant_id: uuid.UUID, email: str
) -> Sequence[Row[*tuple[Any, ...]]]:
    statement = _links(tenant_id).where(Contact.email == _email_key(email))
    rows: Sequence[Row[*tuple[Any, ...]]] = (
        await session.execute(statement.order_by(Account.external_id))
    ).all()
    return rows


async def list_links(
    session: AsyncSession, tenant_id: uuid.UUID, *, after_email: str | None, limit: int
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Return every link of the first `limit` contacts after `after_email`, by email."""
    emails = (
        select(Contact.email)
        .where(Contact.tenant_id == tenant_id)
        .group_by(Contact.email)
        .order_by(Contact.email)
        .limit(limit)
    )
    if after_email is not None:
        emails = emails.where(Contact.email > after_email)
    statement = (
        _links(tenant_id)
        .where(Contact.email.in_(emails.scalar_subquery()))
        .order_by(Contact.email, Account.external_id)
    )
    rows: Sequence[Row[*tuple[Any, ...]]] = (await session.execute(statement)).all()
    return rows


async def delete_link(
    session: AsyncSession, tenant_id: uuid.UUID, email: str, account_external_id: str
) -> str | None:
    """Remove one link; return the stored email, or None when there was no such link.

    A merged-away account stands for its survivor, which holds its links.
    """
    account_id = (
        select(func.coalesce(Account.survivor_id, Account.id))
        .where(Account.tenant_id == tenant_id, Account.external_id == account_external_id)
        .scalar_subquery()
    )
    statement = (
        delete(Contact)
        .where(
            Contact.tenant_id == tenant_id,
            Contact.email == _email_key(email),
            Contact.account_id == account_id,
        )
        .returning(Contact.email)
    )
    stored_email: str | None = (await session.execute(statement)).scalar_one_or_none()
    return stored_email


async def delete_contact(session: AsyncSession, tenant_id: uuid.UUID, email: str) -> Sequence[str]:
    """Remove every link of the contact; return the stored email once per removed link."""
    statement = (
        delete(Contact)
        .where(Contact.tenant_id == tenant_id, Contact.email == _email_key(email))
        .returning(Contact.email)
    )
    return (await session.execute(statement)).scalars().all()


async def move_links(
    session: AsyncSession, tenant_id: uuid.UUID, from_id: int, to_id: int
) -> list[str]:
    """Move the contact links of `from_id` to `to_id`; return the emails moved.

    A person linked to both keeps the link to `to_id` with its role.
    """
    moved = await session.execute(
        delete(Contact)
        .where(Contact.tenant_id == tenant_id, Contact.account_id == from_id)
        .returning(Contact.email, Contact.role)
    )
    links = sorted((row.email, row.role) for row in moved)
    if links:
        await session.execute(
            insert(Contact)
            .values(
                [
                    {"tenant_id": tenant_id, "email": email, "account_id": to_id, "role": role}
                    for email, role in links
                ]
            )
            .on_conflict_do_nothing()
        )
    return [email for email, _ in links]
