"""Survey responses: idempotent writes by (source, response_id), newest version wins."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.periods import Period
from app.responses import repository
from app.responses.errors import ResponseNotFoundError
from app.responses.schemas import ResponseIn, ResponseRead, ResponseWriteResult
from app.schemas import Page, decode_cursor, encode_cursor

log = structlog.get_logger()


def _replaces(stored: ResponseIn, new: ResponseIn) -> bool:
    """Whether `new`, arriving after `stored`, is the newer version; the SQL upsert agrees."""
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
    session: AsyncSession, tenant_id: uuid.UUID, responses: Sequence[ResponseIn]
) -> ResponseWriteResult:
    # Rows are written in key order, so concurrent batches lock them in the same order
    # instead of deadlocking.
    merged = sorted(_merge_repeats(responses), key=lambda item: (item.source, item.response_id))
    created, updated = await repository.upsert_responses(session, tenant_id, merged)
    result = ResponseWriteResult(
        created=created, updated=updated, unchanged=len(merged) - created - updated
    )
    log.info("responses.written", tenant_id=str(tenant_id), **result.model_dump())
    return result


async def match_accounts(
    session: AsyncSession, tenant_id: uuid.UUID, external_ids: Sequence[str]
) -> int:
    """Link stored, unmatched responses to accounts that now exist under these ids."""
    matched = await repository.match_accounts(session, tenant_id, external_ids)
    if matched:
        log.info("responses.matched", tenant_id=str(tenant_id), responses=matched)
    return matched


def _response_read(row: Row[*tuple[Any, ...]]) -> ResponseRead:
    response, account_external_id = row
    return ResponseRead(
        source=response.source,
        response_id=response.response_id,
        account_external_id=account_external_id,
        email=response.email,
        score=response.score,
        comment=response.comment,
        submitted_at=response.submitted_at,
        updated_at=response.source_updated_at,
        received_at=response.received_at,
    )


async def get_response(
    session: AsyncSession, tenant_id: uuid.UUID, source: str, response_id: str
) -> ResponseRead:
    row = await repository.get_response(session, tenant_id, source, response_id)
    if row is None:
        raise ResponseNotFoundError(f"No response {response_id!r} from source {source!r}.")
    return _response_read(row)


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
