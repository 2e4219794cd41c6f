import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Row,
    Select,
    SmallInteger,
    Text,
    and_,
    cast,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Account
from app.db.base import INSERTED
from app.responses.models import SurveyResponse
from app.responses.schemas import ResponseIn

# The fields that make up a response's content; a version with other values is a change.
_CONTENT = ("account_ref", "email", "score", "comment", "submitted_at", "source_updated_at")


def _readable(tenant_id: uuid.UUID) -> Select[*tuple[Any, ...]]:
    """Responses of one tenant with the external id of the account they are matched to."""
    return (
        select(SurveyResponse, Account.external_id)
        .outerjoin(
            Account,
            and_(
                Account.tenant_id == SurveyResponse.tenant_id,
                Account.id == SurveyResponse.account_id,
            ),
        )
        .where(SurveyResponse.tenant_id == tenant_id)
    )


async def upsert_responses(
    session: AsyncSession, tenant_id: uuid.UUID, responses: Sequence[ResponseIn]
) -> tuple[int, int]:
    """Insert responses or replace stored ones with newer versions, in one statement.

    `responses` must hold each (source, response_id) once. A stored response is replaced
    when both versions carry `updated_at` and the new one is later, or, when either lacks
    it, when the content differs. Accounts are matched by external id as rows are written.
    Returns the numbers of rows created and replaced.
    """
    rows = (
        func.unnest(
            cast([item.source for item in responses], ARRAY(Text)),
            cast([item.response_id for item in responses], ARRAY(Text)),
            cast([item.account_external_id for item in responses], ARRAY(Text)),
            cast([item.email for item in responses], ARRAY(Text)),
            cast([item.score for item in responses], ARRAY(SmallInteger)),
            cast([item.comment for item in responses], ARRAY(Text)),
            cast([item.submitted_at for item in responses], ARRAY(DateTime(timezone=True))),
            cast([item.updated_at for item in responses], ARRAY(DateTime(timezone=True))),
        )
        .table_valued(
            "source",
            "response_id",
            "account_ref",
            "email",
            "score",
            "comment",
            "submitted_at",
            "source_updated_at",
        )
        .render_derived()
    )
    incoming = (
        select(
            cast(tenant_id, SurveyResponse.tenant_id.type),
            rows.c.source,
            rows.c.response_id,
            rows.c.account_ref,
            Account.id,
            rows.c.email,
            rows.c.score,
            rows.c.comment,
            rows.c.submitted_at,
            rows.c.source_updated_at,
        )
        .select_from(rows)
        .outerjoin(
            Account,
            and_(Account.tenant_id == tenant_id, Account.external_id == rows.c.account_ref),
        )
    )
    inserts = insert(SurveyResponse).from_select(
        [
            "tenant_id",
            "source",
            "response_id",
            "account_ref",
            "account_id",
            "email",
            "score",
            "comment",
            "submitted_at",
            "source_updated_at",
        ],
        incoming,
    )
    new = inserts.excluded
    stored = SurveyResponse.__table__.c
    both_versioned = and_(
        new.source_updated_at.is_not(None),
        stored.source_updated_at.is_not(None),
    )
    content_changed = tuple_(*(stored[name] for name in _CONTENT)).is_distinct_from(
        tuple_(*(new[name] for name in _CONTENT))
    )
    statement = inserts.on_conflict_do_update(
        index_elements=[
            SurveyResponse.tenant_id,
            SurveyResponse.source,
            SurveyResponse.response_id,
        ],
        set_={
            **{name: new[name] for name in _CONTENT},
            # A version without `updated_at` keeps the newest version time seen, so an
            # older versioned copy arriving later still changes nothing.
            "source_updated_at": func.coalesce(new.source_updated_at, stored.source_updated_at),
            "account_id": new.account_id,
            "received_at": func.now(),
        },
        where=or_(
            and_(both_versioned, new.source_updated_at > stored.source_updated_at),
            and_(~both_versioned, content_changed),
        ),
    ).returning(INSERTED)
    flags = (await session.execute(statement)).scalars().all()
    created = sum(1 for inserted in flags if inserted)
    return created, len(flags) - created


async def match_accounts(
    session: AsyncSession, tenant_id: uuid.UUID, external_ids: Sequence[str]
) -> int:
    """Link unmatched responses naming these accounts; return how many were linked."""
    statement = (
        update(SurveyResponse)
        .where(
            SurveyResponse.tenant_id == tenant_id,
            SurveyResponse.account_id.is_(None),
            SurveyResponse.account_ref == Account.external_id,
            Account.tenant_id == tenant_id,
            Account.external_id.in_(external_ids),
        )
        .values(account_id=Account.id)
    )
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def get_response(
    session: AsyncSession, tenant_id: uuid.UUID, source: str, response_id: str
) -> Row[*tuple[Any, ...]] | None:
    statement = _readable(tenant_id).where(
        SurveyResponse.source == source, SurveyResponse.response_id == response_id
    )
    row: Row[*tuple[Any, ...]] | None = (await session.execute(statement)).one_or_none()
    return row


async def list_responses(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    account_external_id: str | None,
    source: str | None,
    submitted_from: datetime | None,
    submitted_before: datetime | None,
    matched: bool | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Row[*tuple[Any, ...]]]:
    statement = _readable(tenant_id).order_by(SurveyResponse.id).limit(limit)
    if account_external_id is not None:
        statement = statement.where(Account.external_id == account_external_id)
    if source is not None:
        statement = statement.where(SurveyResponse.source == source)
    if submitted_from is not None:
        statement = statement.where(SurveyResponse.submitted_at >= submitted_from)
    if submitted_before is not None:
        statement = statement.where(SurveyResponse.submitted_at < submitted_before)
    if matched is not None:
        statement = statement.where(
            SurveyResponse.account_id.is_not(None)
            if matched
            else SurveyResponse.account_id.is_(None)
        )
    if after_id is not None:
        statement = statement.where(SurveyResponse.id > after_id)
    rows: Sequence[Row[*tuple[Any, ...]]] = (await session.execute(statement)).all()
    return rows
