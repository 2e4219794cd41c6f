import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Integer,
    Numeric,
    Row,
    Select,
    Table,
    Text,
    and_,
    cast,
    delete,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.accounts.models import Account, AccountDomain, RevenueRecord
from app.db.base import INSERTED


def _current_revenue(tenant_id: uuid.UUID, at: datetime) -> Any:
    """Build a LATERAL subquery selecting the revenue record of `Account` in force at `at`."""
    return (
        select(RevenueRecord.amount, RevenueRecord.currency, RevenueRecord.effective_at)
        .where(
            RevenueRecord.tenant_id == tenant_id,
            RevenueRecord.account_id == Account.id,
            RevenueRecord.effective_at <= at,
        )
        .order_by(RevenueRecord.effective_at.desc())
        .limit(1)
        .lateral("current_revenue")
    )


def _external_id_of(tenant_id: uuid.UUID, account_id: Any) -> Any:
    other = aliased(Account, name="other")
    return (
        select(other.external_id)
        .where(other.tenant_id == tenant_id, other.id == account_id)
        .scalar_subquery()
    )


def _accounts_with_revenue(tenant_id: uuid.UUID, at: datetime) -> Select[*tuple[Any, ...]]:
    """Accounts with the revenue in force at `at`, their sorted domains (null for none) and
    the external ids of their parent and of the account they were merged into."""
    revenue = _current_revenue(tenant_id, at)
    domains = (
        select(func.array_agg(aggregate_order_by(AccountDomain.domain, AccountDomain.domain)))
        .where(AccountDomain.tenant_id == tenant_id, AccountDomain.account_id == Account.id)
        .scalar_subquery()
    )
    return (
        select(
            Account,
            revenue.c.amount,
            revenue.c.currency,
            revenue.c.effective_at,
            domains.label("domains"),
            _external_id_of(tenant_id, Account.parent_id).label("parent_external_id"),
            _external_id_of(tenant_id, Account.merged_into_id).label("merged_into_external_id"),
        )
        .outerjoin(revenue, true())
        .where(Account.tenant_id == tenant_id)
    )


async def upsert_account(
    session: AsyncSession, tenant_id: uuid.UUID, external_id: str, fields: Mapping[str, Any]
) -> tuple[Account, bool]:
    """Insert the account or replace its descriptive fields; return it and whether it is new."""
    values = insert(Account).values(tenant_id=tenant_id, external_id=external_id, **fields)
    statement = values.on_conflict_do_update(
        index_elements=[Account.tenant_id, Account.external_id],
        set_={**{name: values.excluded[name] for name in fields}, "updated_at": func.now()},
    ).returning(Account, INSERTED)
    result = await session.execute(statement, execution_options={"populate_existing": True})
    account, inserted = result.one()
    return account, bool(inserted)


async def replace_domains(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: int, domains: Sequence[str]
) -> set[str]:
    """Set the account's domains to `domains`; return the domains added or removed."""
    removed = await session.execute(
        delete(AccountDomain)
        .where(
            AccountDomain.tenant_id == tenant_id,
            AccountDomain.account_id == account_id,
            AccountDomain.domain.not_in(domains),
        )
        .returning(AccountDomain.domain)
    )
    changed = set(removed.scalars().all())
    if domains:
        added = await session.execute(
            insert(AccountDomain)
            .values(
                [
                    {"tenant_id": tenant_id, "domain": domain, "account_id": account_id}
                    for domain in domains
                ]
            )
            .on_conflict_do_nothing()
            .returning(AccountDomain.domain)
        )
        changed.update(added.scalars().all())
    return changed


async def find_account_id(
    session: AsyncSession, tenant_id: uuid.UUID, external_id: str
) -> int | None:
    statement = select(Account.id).where(
        Account.tenant_id == tenant_id, Account.external_id == external_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_account_with_revenue(
    session: AsyncSession, tenant_id: uuid.UUID, external_id: str, at: datetime
) -> Row[*tuple[Any, ...]] | None:
    statement = _accounts_with_revenue(tenant_id, at).where(Account.external_id == external_id)
    row: Row[*tuple[Any, ...]] | None = (await session.execute(statement)).one_or_none()
    return row


async def list_accounts_with_revenue(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    at: datetime,
    *,
    after_external_id: str | None,
    limit: int,
) -> Sequence[Row[*tuple[Any, ...]]]:
    statement = _accounts_with_revenue(tenant_id, at).order_by(Account.external_id).limit(limit)
    if after_external_id is not None:
        statement = statement.where(Account.external_id > after_external_id)
    rows: Sequence[Row[*tuple[Any, ...]]] = (await session.execute(statement)).all()
    return rows


async def revenue_history(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: int
) -> Sequence[RevenueRecord]:
    statement = (
        select(RevenueRecord)
        .where(RevenueRecord.tenant_id == tenant_id, RevenueRecord.account_id == account_id)
        .order_by(RevenueRecord.effective_at.desc())
    )
    return (await session.scalars(statement)).all()


async def ensure_accounts(
    session: AsyncSession, tenant_id: uuid.UUID, names: Mapping[str, str | None]
) -> tuple[dict[str, int], int]:
    """Create the accounts that do not exist yet; return every id by external id, and how
    many were created. A name is set only on accounts created here."""
    external_ids = sorted(names)  # Key order, so concurrent batches cannot deadlock.
    rows = (
        func.unnest(
            cast(external_ids, ARRAY(Text)),
            cast([names[key] for key in external_ids], ARRAY(Text)),
        )
        .table_valued("external_id", "name")
        .render_derived()
    )
    accounts: Table = Account.__table__  # type: ignore[assignment]
    created = (
        insert(accounts)
        .from_select(
            ["tenant_id", "external_id", "name"],
            select(cast(tenant_id, accounts.c.tenant_id.type), rows.c.external_id, rows.c.name),
        )
        .on_conflict_do_nothing(index_elements=[accounts.c.tenant_id, accounts.c.external_id])
        .returning(accounts.c.id)
        .cte("created")
    )
    created_count = (await session.execute(select(func.count()).select_from(created))).scalar_one()

    # A second statement, because the first one's snapshot does not show accounts that a
    # concurrent batch committed while this one waited on their keys. The ids come back
    # as two arrays in one row, which asyncpg decodes much faster than 10,000 rows.
    found = await session.execute(
        select(func.array_agg(accounts.c.external_id), func.array_agg(accounts.c.id)).where(
            accounts.c.tenant_id == tenant_id,
            accounts.c.external_id == func.any(cast(external_ids, ARRAY(Text))),
        )
    )
    found_external_ids, found_ids = found.one()
    return dict(zip(found_external_ids or [], found_ids or [], strict=True)), created_count


async def upsert_revenue(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    records: Sequence[tuple[int, datetime, Decimal, str]],
) -> tuple[int, int]:
    """Insert or overwrite revenue records keyed by (account, effective_at).

    A record whose amount and currency are already stored is left alone. Returns the
    number of records created and updated; the rest were unchanged.
    """
    records = sorted(records, key=itemgetter(0, 1))  # Lock order.
    account_ids, effective_ats, amounts, currencies = (
        (list(column) for column in zip(*records, strict=True)) if records else ([], [], [], [])
    )
    rows = (
        func.unnest(
            cast(account_ids, ARRAY(BigInteger)),
            cast(effective_ats, ARRAY(DateTime(timezone=True))),
            # Sent as text, which asyncpg encodes in a third of the time of Decimal values,
            # and converted exactly by PostgreSQL.
            cast(cast([str(amount) for amount in amounts], ARRAY(Text)), ARRAY(Numeric)),
            cast(currencies, ARRAY(Text)),
        )
        .table_valued("account_id", "effective_at", "amount", "currency")
        .render_derived()
    )
    table: Table = RevenueRecord.__table__  # type: ignore[assignment]
    inserts = insert(table).from_select(
        ["tenant_id", "account_id", "effective_at", "amount", "currency"],
        select(
            cast(tenant_id, table.c.tenant_id.type),
            rows.c.account_id,
            rows.c.effective_at,
            rows.c.amount,
            rows.c.currency,
        ),
    )
    written = (
        inserts.on_conflict_do_update(
            index_elements=[table.c.tenant_id, table.c.account_id, table.c.effective_at],
            set_={
                "amount": inserts.excluded.amount,
                "currency": inserts.excluded.currency,
                "recorded_at": func.now(),
            },
            where=(table.c.amount != inserts.excluded.amount)
            | (table.c.currency != inserts.excluded.currency),
        )
        .returning(INSERTED)
        .cte("written")
    )
    # Counted in the database, so 10,000 flags do not travel back as rows.
    counts = select(
        func.count().filter(written.c.inserted), func.count().filter(~written.c.inserted)
    )
    created, updated = (await session.execute(counts)).one()
    return created, updated


# Key class of the tenant's hierarchy lock, with the tenant id's hash as the object key.
_HIERARCHY_LOCK_CLASS = 0x72636F77


async def lock_hierarchy(
    session: AsyncSession, tenant_id: uuid.UUID, *, exclusive: bool = True
) -> None:
    """Take the tenant's hierarchy lock until the transaction ends.

    Parent changes and merges take it exclusively before they read the hierarchy, so two
    writers that would together close a cycle run one after the other, and the second
    one sees the first one's parent. Revenue updates take it shared before they read the
    merges, so a merge committing meanwhile cannot leave an update on the merged-away
    account. Take it before the response resolution lock, never after.
    """
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    key = (literal(_HIERARCHY_LOCK_CLASS, Integer), func.hashtext(str(tenant_id)))
    await session.execute(select(lock(*key)))


async def get_account(
    session: AsyncSession, tenant_id: uuid.UUID, external_id: str
) -> Account | None:
    statement = select(Account).where(
        Account.tenant_id == tenant_id, Account.external_id == external_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def external_ids(
    session: AsyncSession, tenant_id: uuid.UUID, account_ids: Sequence[int]
) -> dict[int, str]:
    statement = select(Account.id, Account.external_id).where(
        Account.tenant_id == tenant_id, Account.id.in_(account_ids)
    )
    return {row.id: row.external_id for row in await session.execute(statement)}


# Ancestors an account may have. CRM hierarchies are a few levels deep; the limit bounds
# the recursive walks of cycle checks and of `level=parent` reports. A parent change that
# would go deeper is rejected. Attaching a deep subtree under a parent can still make a
# longer chain, and reports then stop at this depth.
MAX_HIERARCHY_DEPTH = 100


async def ancestors(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: int
) -> list[tuple[int, str]]:
    """Return the account and its ancestors, nearest first, as (id, external id) pairs."""
    chain = (
        select(Account.id, Account.external_id, Account.parent_id, literal(0).label("depth"))
        .where(Account.tenant_id == tenant_id, Account.id == account_id)
        .cte("chain", recursive=True)
    )
    parent = aliased(Account, name="parent")
    chain = chain.union_all(
        select(parent.id, parent.external_id, parent.parent_id, chain.c.depth + 1).join(
            chain,
            and_(
                parent.tenant_id == tenant_id,
                parent.id == chain.c.parent_id,
                chain.c.depth < MAX_HIERARCHY_DEPTH,
            ),
        )
    )
    statement = select(chain.c.id, chain.c.external_id).order_by(chain.c.depth)
    return [(row.id, row.external_id) for row in (await session.execute(statement)).all()]


async def merge_links(
    session: AsyncSession, tenant_id: uuid.UUID
) -> dict[int, tuple[int, datetime]]:
    """Return every merged-away account of the tenant: id to (merged into id, merged at)."""
    statement = select(Account.id, Account.merged_into_id, Account.merged_at).where(
        Account.tenant_id == tenant_id, Account.merged_into_id.is_not(None)
    )
    return {
        row.id: (row.merged_into_id, row.merged_at)
        for row in (await session.execute(statement)).all()
    }


async def move_children(
    session: AsyncSession, tenant_id: uuid.UUID, old_parent_id: int, new_parent_id: int
) -> int:
    """Give the children of `old_parent_id`, except `new_parent_id`, the new parent.

    Returns the number of accounts changed.
    """
    result = await session.execute(
        update(Account)
        .where(
            Account.tenant_id == tenant_id,
            Account.parent_id == old_parent_id,
            Account.id != new_parent_id,
        )
        .values(parent_id=new_parent_id, updated_at=func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def set_parent(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: int, parent_id: int | None
) -> None:
    await session.execute(
        update(Account)
        .where(Account.tenant_id == tenant_id, Account.id == account_id)
        .values(parent_id=parent_id, updated_at=func.now())
    )


async def move_domains(
    session: AsyncSession, tenant_id: uuid.UUID, from_id: int, to_id: int
) -> list[str]:
    """Move the domains of `from_id` to `to_id`, which may list some already; return them."""
    moved = await session.execute(
        delete(AccountDomain)
        .where(AccountDomain.tenant_id == tenant_id, AccountDomain.account_id == from_id)
        .returning(AccountDomain.domain)
    )
    domains = sorted(moved.scalars().all())
    if domains:
        await session.execute(
            insert(AccountDomain)
            .values(
                [
                    {"tenant_id": tenant_id, "domain": domain, "account_id": to_id}
                    for domain in domains
                ]
            )
            .on_conflict_do_nothing()
        )
    return domains


async def mark_merged(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    account_id: int,
    *,
    into_id: int,
    survivor_id: int,
    merged_at: datetime,
) -> None:
    """Mark the account merged away, and point the accounts merged into it at the survivor."""
    await session.execute(
        update(Account)
        .where(Account.tenant_id == tenant_id, Account.id == account_id)
        .values(
            merged_into_id=into_id,
            merged_at=merged_at,
            survivor_id=survivor_id,
            updated_at=func.now(),
        )
    )
    await session.execute(
        update(Account)
        .where(Account.tenant_id == tenant_id, Account.survivor_id == account_id)
        .values(survivor_id=survivor_id)
    )
