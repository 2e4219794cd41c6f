"""Accounts and their effective-dated revenue.

Revenue keeps the ISO 4217 currency it arrived in; reports convert it into the reporting
currency with the tenant's exchange rates (`app.fx`).

Revenue is a history: each record holds from its `effective_at` until the next record of
the same account, whatever order the records arrived in. Records are keyed by
(account, effective_at), so replaying an update changes nothing.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.errors import AccountNotFoundError
from app.accounts.models import RevenueRecord
from app.accounts.schemas import (
    AccountDetail,
    AccountPut,
    AccountRead,
    RevenueRead,
    RevenueUpdateBatch,
    RevenueUpdateResult,
)
from app.money import format_amount
from app.responses import service as response_service
from app.schemas import Page, decode_cursor, encode_cursor
from app.tenancy.models import Tenant

log = structlog.get_logger()


def _revenue_read(amount: Any, currency: str | None, effective_at: Any) -> RevenueRead | None:
    if amount is None or currency is None:
        return None
    return RevenueRead(
        amount=format_amount(amount, currency), currency=currency, effective_at=effective_at
    )


def _account_read(row: Row[*tuple[Any, ...]]) -> AccountRead:
    account, amount, currency, effective_at, domains = row
    return AccountRead(
        external_id=account.external_id,
        name=account.name,
        region=account.region,
        industry=account.industry,
        owner=account.owner,
        attributes=account.attributes,
        domains=domains or [],
        revenue=_revenue_read(amount, currency, effective_at),
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def _history_read(records: Sequence[RevenueRecord]) -> list[RevenueRead]:
    return [
        RevenueRead(
            amount=format_amount(record.amount, record.currency),
            currency=record.currency,
            effective_at=record.effective_at,
        )
        for record in records
    ]


async def get_account(session: AsyncSession, tenant: Tenant, external_id: str) -> AccountDetail:
    row = await repository.get_account_with_revenue(
        session, tenant.id, external_id, datetime.now(UTC)
    )
    if row is None:
        raise AccountNotFoundError(f"No account with external id {external_id!r}.")
    history = await repository.revenue_history(session, tenant.id, row[0].id)
    return AccountDetail(**_account_read(row).model_dump(), revenue_history=_history_read(history))


async def get_account_id(session: AsyncSession, tenant_id: uuid.UUID, external_id: str) -> int:
    account_id = await repository.find_account_id(session, tenant_id, external_id)
    if account_id is None:
        raise AccountNotFoundError(
            f"No account with external id {external_id!r}; "
            f"create it with PUT /v1/accounts/{external_id} first."
        )
    return account_id


async def list_accounts(
    session: AsyncSession, tenant: Tenant, *, limit: int, cursor: str | None
) -> Page[AccountRead]:
    after = decode_cursor(cursor, str) if cursor else None
    rows = await repository.list_accounts_with_revenue(
        session, tenant.id, datetime.now(UTC), after_external_id=after, limit=limit + 1
    )
    items = [_account_read(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].external_id) if len(rows) > limit else None
    return Page[AccountRead](items=items, next_cursor=next_cursor)


async def put_account(
    session: AsyncSession, tenant: Tenant, external_id: str, body: AccountPut
) -> tuple[AccountDetail, bool]:
    """Create the account or replace its fields, and record the revenue sent with it.

    Returns the account and whether it was created.
    """
    fields = body.model_dump(exclude={"revenue", "domains"})
    account, created = await repository.upsert_account(session, tenant.id, external_id, fields)
    changed_domains = await repository.replace_domains(session, tenant.id, account.id, body.domains)
    if body.revenue is not None:
        revenue = body.revenue
        await repository.upsert_revenue(
            session,
            tenant.id,
            [(account.id, revenue.effective_at, revenue.amount, revenue.currency)],
        )
    if created or changed_domains:
        await response_service.resolve_accounts(
            session,
            tenant.id,
            account_refs=[external_id] if created else [],
            domains=sorted(changed_domains),
        )
    if created:
        log.info("account.created", tenant_id=str(tenant.id), account_id=account.id)

    return await get_account(session, tenant, external_id), created


async def apply_revenue_updates(
    session: AsyncSession, tenant: Tenant, batch: RevenueUpdateBatch
) -> RevenueUpdateResult:
    """Apply a batch of revenue updates, all or nothing, creating unknown accounts.

    Updates for the same account and `effective_at` are merged, the last one winning.
    """
    names: dict[str, str | None] = {}
    latest: dict[tuple[str, datetime], Any] = {}
    for update in batch.updates:
        if names.get(update.account_external_id) is None:
            names[update.account_external_id] = update.account_name
        latest[(update.account_external_id, update.effective_at)] = update

    account_ids, accounts_created = await repository.ensure_accounts(session, tenant.id, names)
    records = [
        (account_ids[external_id], effective_at, update.amount, update.currency)
        for (external_id, effective_at), update in latest.items()
    ]
    created, updated = await repository.upsert_revenue(session, tenant.id, records)
    if accounts_created:
        await response_service.resolve_accounts(session, tenant.id, account_refs=list(names))

    result = RevenueUpdateResult(
        created=created,
        updated=updated,
        unchanged=len(records) - created - updated,
        accounts_created=accounts_created,
    )
    log.info("revenue.updated", tenant_id=str(tenant.id), **result.model_dump())
    return result
