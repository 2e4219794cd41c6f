"""Survey responses: idempotent writes by (source, response_id), newest version wins.

A response counts for the account that the match rules find (see
`repository.resolve_accounts`). The rules run again whenever a response is written and
whenever an account, contact or domain that could match responses changes, so a response
is matched as soon as its account becomes known, with no re-send.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.errors import AccountNotFoundError
from app.db import statistics
from app.periods import Period
from app.responses import repository
from app.responses.errors import ResponseNotFoundError
from app.responses.schemas import (
    ResponseIn,
    ResponseRead,
    ResponseWriteResult,
    UnmatchedResponseRead,
)
from app.schemas import Page, decode_cursor, encode_cursor

log = structlog.get_logger()


def _replaces(stored: ResponseIn, new: ResponseIn) -> bool:
    """Return whether `new`, arriving after `stored`, is the newer version (as in the upsert)."""
    if stored.updated_at is not None and new.updated_at is not None:
        return new.updated_at > stored.updated_at
    return new != stored


def _merge_repeats(responses: Sequence[ResponseIn]) -> list[ResponseIn]:
    """Keep one version per (source, response_id), taking the batch's order as arrival order."""
    current: dict[tuple[str, str], ResponseIn] = {}
    for response in responses:
        key = (response.source, response.response_id)
        if key not in current or _replaces(current[key], response):
            current[key] = response
    return list(current.values())


async def write_responses(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    responses: Sequence[ResponseIn],
    *,
    replace_same_version: bool = False,
) -> ResponseWriteResult:
    """Write responses under the version rules of `repository.upsert_responses`.

    `replace_same_version` lets a version with the same `updated_at` and other content
    replace the stored one, for a replay that maps a stored delivery again.
    """
    # Rows are written in key order, so concurrent batches lock them in the same order
    # instead of deadlocking.
    merged = sorted(_merge_repeats(responses), key=lambda item: (item.source, item.response_id))
    # NOTE: a batch of 10,000 new responses took 1.5 s in a tenant with none stored and
    # 7.9 s with 100,000 stored (PostgreSQL 15). A plan of the quarter-state refresh that
    # the account matching fires read every response of the tenant; not profiled further.
    await statistics.before_large_write(session, len(merged))
    # Locked before the upsert takes row locks: a change of accounts or contacts that holds
    # the lock exclusively may be waiting to update these rows.
    await repository.lock_resolution(session, tenant_id, exclusive=False)
    await repository.lock_quarter_state(session, tenant_id, exclusive=len(merged) > 1)
    written = await repository.upsert_responses(
        session, tenant_id, merged, replace_same_version=replace_same_version
    )
    await repository.resolve_accounts(
        session, tenant_id, response_ids=[response_pk for response_pk, _ in written]
    )

    created = sum(1 for _, inserted in written if inserted)
    updated = len(written) - created
    statistics.record_inserted(session, "responses", created)
    result = ResponseWriteResult(
        created=created, updated=updated, unchanged=len(merged) - created - updated
    )
    log.info("responses.written", tenant_id=str(tenant_id), **result.model_dump())
    return result


async def lock_account_resolution(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Hold off response writes of the tenant until this transaction ends.

    Call it before changing responses or contacts in a transaction that later calls
    `resolve_accounts`, so that the two cannot wait on each other's locks. It takes the
    quarter-state lock too, which such changes need after the resolution lock.
    """
    await repository.lock_resolution(session, tenant_id, exclusive=True)
    await repository.lock_quarter_state(session, tenant_id)


async def resolve_accounts(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    account_refs: Sequence[str] = (),
    email_keys: Sequence[str] = (),
    domains: Sequence[str] = (),
) -> int:
    """Match stored responses again after accounts, contacts or domains changed.

    Call it after the change is flushed, with the external ids of new accounts, the
    lower-cased emails of changed contacts and the domains added to or removed from
    accounts. Returns the number of responses whose account changed.
    """
    await lock_account_resolution(session, tenant_id)
    changed = await repository.resolve_accounts(
        session, tenant_id, account_refs=account_refs, email_keys=email_keys, domains=domains
    )
    if changed:
        log.info("responses.matched", tenant_id=str(tenant_id), responses=changed)
    return changed


async def move_responses(
    session: AsyncSession, tenant_id: uuid.UUID, from_id: int, to_id: int
) -> int:
    """Move a merged-away account's responses to the survivor; return how many.

    Call `lock_account_resolution` first.
    """
    return await repository.move_to_survivor(session, tenant_id, from_id, to_id)


def _response_read(row: Row[*tuple[Any, ...]]) -> ResponseRead:
    response, account_external_id = row
    return ResponseRead(
        source=response.source,
        response_id=response.response_id,
        account_external_id=account_external_id,
        matched_by=response.matched_by,
        email=response.email,
        score=response.score,
        comment=response.comment,
        submitted_at=response.submitted_at,
        updated_at=response.source_updated_at,
        received_at=response.received_at,
        erased_at=response.erased_at,
    )


def _not_found(source: str, response_id: str) -> ResponseNotFoundError:
    return ResponseNotFoundError(f"No response {response_id!r} from source {source!r}.")


async def get_response(
    session: AsyncSession, tenant_id: uuid.UUID, source: str, response_id: str
) -> ResponseRead:
    row = await repository.get_response(session, tenant_id, source, response_id)
    if row is None:
        raise _not_found(source, response_id)
    return _response_read(row)


async def is_matched(
    session: AsyncSession, tenant_id: uuid.UUID, source: str, response_id: str
) -> bool:
    """Tell whether the stored response counts for an account."""
    row = await repository.get_response(session, tenant_id, source, response_id)
    return row is not None and row[1] is not None


async def assign_account(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    source: str,
    response_id: str,
    account_external_id: str | None,
) -> ResponseRead:
    """Assign the response to an account by hand, or with None hand it back to the rules.

    A manual assignment is kept when the match rules run again and when a newer version
    of the response arrives.
    """
    row = await repository.get_response(session, tenant_id, source, response_id)
    if row is None:
        raise _not_found(source, response_id)
    response_pk = row[0].id

    if account_external_id is None:
        await repository.lock_resolution(session, tenant_id, exclusive=False)
        await repository.clear_assignment(session, tenant_id, response_pk)
        await repository.resolve_accounts(session, tenant_id, response_ids=[response_pk])
    elif not await repository.assign_account(session, tenant_id, response_pk, account_external_id):
        raise AccountNotFoundError(
            f"No account with external id {account_external_id!r}; "
            f"create it with PUT /v1/accounts/{account_external_id} first."
        )

    log.info(
        "response.assigned",
        tenant_id=str(tenant_id),
        response_pk=response_pk,
        manual=account_external_id is not None,
    )
    return await get_response(session, tenant_id, source, response_id)


async def delete_response(
    session: AsyncSession, tenant_id: uuid.UUID, source: str, response_id: str
) -> None:
    if not await repository.delete_response(session, tenant_id, source, response_id):
        raise _not_found(source, response_id)
    log.info("response.deleted", tenant_id=str(tenant_id), source=source)


async def erase_email(
    session: AsyncSession, tenant_id: uuid.UUID, email: str
) -> Sequence[tuple[str, str]]:
    """Clear the email and comment of this person's responses, keeping score and account.

    Returns the (source, response_id) of each response changed.
    """
    return await repository.erase_email(session, tenant_id, email)


async def list_unmatched(
    session: AsyncSession, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[UnmatchedResponseRead]:
    after_id = decode_cursor(cursor, int) if cursor else None
    rows = await repository.list_unmatched(session, tenant_id, after_id=after_id, limit=limit + 1)
    items = [
        UnmatchedResponseRead(
            source=response.source,
            response_id=response.response_id,
            sent_account_external_id=response.account_ref,
            reason=reason,
            email=response.email,
            score=response.score,
            comment=response.comment,
            submitted_at=response.submitted_at,
            updated_at=response.source_updated_at,
            received_at=response.received_at,
        )
        for response, reason in rows[:limit]
    ]
    next_cursor = encode_cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    return Page[UnmatchedResponseRead](items=items, next_cursor=next_cursor)


async def list_responses(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    account_external_id: str | None,
    source: str | None,
    period: Period | None,
    matched: bool | None,
    limit: int,
    cursor: str | None,
) -> Page[ResponseRead]:
    after_id = decode_cursor(cursor, int) if cursor else None
    submitted_from: datetime | None = period.start if period else None
    submitted_before: datetime | None = period.end if period else None
    rows = await repository.list_responses(
        session,
        tenant_id,
        account_external_id=account_external_id,
        source=source,
        submitted_from=submitted_from,
        submitted_before=submitted_before,
        matched=matched,
        after_id=after_id,
        limit=limit + 1,
    )
    items = [_response_read(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    return Page[ResponseRead](items=items, next_cursor=next_cursor)
