import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    BigInteger,
    BindParameter,
    ColumnElement,
    DateTime,
    Integer,
    Row,
    Select,
    SmallInteger,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.accounts.models import Account, AccountDomain
from app.contacts.models import Contact
from app.db.base import INSERTED
from app.responses.models import MatchRule, SurveyResponse
from app.responses.schemas import ResponseIn, UnmatchedReason

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


# Columns of the response upsert, each sent as one array parameter named `in_<column>`. The
# names differ from the table's columns so that SQLAlchemy never reads them as column values.
_UPSERT_ARRAYS: tuple[tuple[str, Any], ...] = (
    ("source", Text),
    ("response_id", Text),
    ("account_ref", Text),
    ("email", Text),
    ("score", SmallInteger),
    ("comment", Text),
    ("submitted_at", DateTime(timezone=True)),
    ("source_updated_at", DateTime(timezone=True)),
)


@cache
def _upsert_statement(replace_same_version: bool = False) -> Any:
    """Build the response upsert once per variant; every webhook runs it, and building it
    costs more CPU than PostgreSQL spends running it.

    With `replace_same_version`, a version with the same `updated_at` and other content
    replaces the stored one too: a replay maps the same version again, maybe with the
    endpoint's new settings.
    """
    tenant_id = bindparam("in_tenant_id", type_=SurveyResponse.tenant_id.type)
    rows = (
        func.unnest(
            *(
                cast(bindparam(f"in_{name}", type_=ARRAY(item_type)), ARRAY(item_type))
                for name, item_type in _UPSERT_ARRAYS
            )
        )
        .table_valued(*(name for name, _ in _UPSERT_ARRAYS))
        .render_derived()
    )
    incoming = select(
        cast(tenant_id, SurveyResponse.tenant_id.type),
        *(rows.c[name] for name, _ in _UPSERT_ARRAYS),
    ).select_from(rows)
    # The table, not the mapped class: with a parameter dict, an ORM insert would be run as
    # an ORM bulk insert of that dict.
    table: Table = SurveyResponse.__table__  # type: ignore[assignment]
    inserts = insert(table).from_select(
        ["tenant_id", *(name for name, _ in _UPSERT_ARRAYS)], incoming
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
    return inserts.on_conflict_do_update(
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
            "received_at": func.now(),
            "erased_at": None,
        },
        # An erased response changes only for a newer version, so a copy of the erased
        # one, sent again or without a version, cannot bring its email and comment back.
        where=or_(
            and_(both_versioned, new.source_updated_at > stored.source_updated_at),
            and_(~both_versioned, content_changed, stored.erased_at.is_(None)),
            *(
                [
                    and_(
                        both_versioned,
                        new.source_updated_at == stored.source_updated_at,
                        content_changed,
                        stored.erased_at.is_(None),
                    )
                ]
                if replace_same_version
                else []
            ),
        ),
    ).returning(SurveyResponse.id, INSERTED)


async def upsert_responses(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    responses: Sequence[ResponseIn],
    *,
    replace_same_version: bool = False,
) -> list[tuple[int, bool]]:
    """Insert responses or replace stored ones with newer versions, in one statement.

    `responses` must hold each (source, response_id) once. A stored response is replaced
    when both versions carry `updated_at` and the new one is later, or, when either lacks
    it, when the content differs. A replaced response keeps its account until
    `resolve_accounts` runs, and loses its erasure mark because the new version may carry
    personal data again. Returns the id of each row created or replaced, and whether it
    was created.
    """
    parameters: dict[str, Any] = {
        "in_tenant_id": tenant_id,
        "in_source": [item.source for item in responses],
        "in_response_id": [item.response_id for item in responses],
        "in_account_ref": [item.account_external_id for item in responses],
        "in_email": [item.email for item in responses],
        "in_score": [item.score for item in responses],
        "in_comment": [item.comment for item in responses],
        "in_submitted_at": [item.submitted_at for item in responses],
        "in_source_updated_at": [item.updated_at for item in responses],
    }
    statement = _upsert_statement(replace_same_version)
    written = (await session.execute(statement, parameters)).all()
    return [(response_id, bool(inserted)) for response_id, inserted in written]


# Key class of the tenant's resolution lock, with the tenant id's hash as the object key.
RESOLUTION_LOCK_CLASS = 0x72636F76


@cache
def _lock_statement(exclusive: bool) -> Any:
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    tenant_key = func.hashtext(bindparam("lock_tenant_id", type_=Text))
    return select(lock(literal(RESOLUTION_LOCK_CLASS, Integer), tenant_key))


async def lock_resolution(session: AsyncSession, tenant_id: uuid.UUID, *, exclusive: bool) -> None:
    """Take the tenant's resolution lock until the transaction ends.

    Response writes take it shared, and changes to accounts, contacts or domains take it
    exclusive. So a change waits until the responses being written are committed, and new
    response writes wait until the change is committed. Without the lock, a response and
    a contact written at the same moment could each miss the other.
    """
    await session.execute(_lock_statement(exclusive), {"lock_tenant_id": str(tenant_id)})


# Key class of the tenant's quarter-state lock, which the state triggers take as well
# (see the migration that creates `account_quarter_scores`).
QUARTER_STATE_LOCK_CLASS = 1919119732


async def lock_quarter_state(
    session: AsyncSession, tenant_id: uuid.UUID, *, exclusive: bool = True
) -> None:
    """Take the tenant's quarter-state lock until the transaction ends.

    The state triggers take it shared for a change of one response, with a lock per key,
    and exclusively for any larger change. A transaction that changes responses or
    contacts takes it before its first write, shared for one response and exclusively
    otherwise, so that it never waits for the lock while holding row or key locks that
    another transaction waits for.
    """
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    statement = select(
        lock(
            literal(QUARTER_STATE_LOCK_CLASS, Integer),
            func.hashtext(bindparam("lock_tenant_id", type_=Text)),
        )
    )
    await session.execute(statement, {"lock_tenant_id": str(tenant_id)})


def _resolution(
    tenant_id: uuid.UUID | BindParameter[uuid.UUID], candidates: CTE
) -> Select[*tuple[Any, ...]]:
    """Apply the match rules to `candidates`, a CTE with the columns tenant_id, id,
    account_ref, email_key and email_domain of the tenant's responses.

    Returns one row per candidate: `account_id` and `matched_by` from the first rule that
    finds an account (both null when none does), `merged_from_account_id` when the named
    account was merged away, and `reason` when no rule finds an account. The rules:
    1. the account whose external id the response named;
    2. the contact with the response's email, when it is linked to exactly one account;
    3. the account that lists the email's domain, when exactly one account does.
    A contact linked to several accounts ends the search, so the domain is not tried,
    because the contact's links are more specific about the person than the domain.

    The database function `revcov_lock_and_match_response` (migration 5b0e6c1d9a27)
    applies the same rules to one incoming webhook response, so a change here needs a
    new version of it. `tests/test_webhook_fast_path.py` compares the two.
    """
    named = aliased(Account, name="named_account")
    # LATERAL aggregates probe the indexes once per candidate, whatever the row estimates.
    # Joined as grouped subqueries instead, they can be rescanned per candidate when the
    # statistics do not count freshly written responses yet.
    contact_links = (
        select(
            func.min(Contact.account_id).label("account_id"),
            func.count().label("accounts"),
        )
        .where(Contact.tenant_id == tenant_id, Contact.email == candidates.c.email_key)
        .lateral("contact_links")
    )
    domain_links = (
        select(
            func.min(AccountDomain.account_id).label("account_id"),
            func.count().label("accounts"),
        )
        .where(
            AccountDomain.tenant_id == tenant_id,
            AccountDomain.domain == candidates.c.email_domain,
        )
        .lateral("domain_links")
    )

    by_name = named.id.is_not(None)
    by_contact = contact_links.c.accounts == 1
    by_domain = and_(contact_links.c.accounts == 0, domain_links.c.accounts == 1)
    # A response naming a merged-away account counts for the merge's survivor, and keeps
    # the named account for the periods before the merge.
    account_id = case(
        (by_name, func.coalesce(named.survivor_id, named.id)),
        (by_contact, contact_links.c.account_id),
        (by_domain, domain_links.c.account_id),
    )
    matched_by = case(
        (by_name, literal(MatchRule.ACCOUNT_EXTERNAL_ID.value)),
        (by_contact, literal(MatchRule.CONTACT.value)),
        (by_domain, literal(MatchRule.EMAIL_DOMAIN.value)),
    )
    reason = case(
        (or_(by_name, by_contact, by_domain), null()),
        (candidates.c.account_ref.is_not(None), literal(UnmatchedReason.UNKNOWN_ACCOUNT.value)),
        (contact_links.c.accounts > 1, literal(UnmatchedReason.AMBIGUOUS_CONTACT.value)),
        (domain_links.c.accounts > 1, literal(UnmatchedReason.AMBIGUOUS_DOMAIN.value)),
        else_=literal(UnmatchedReason.NO_MATCH.value),
    )
    return (
        select(
            candidates.c.tenant_id,
            candidates.c.id,
            account_id.label("account_id"),
            matched_by.label("matched_by"),
            case(
                (by_name, func.nullif(named.id, func.coalesce(named.survivor_id, named.id)))
            ).label("merged_from_account_id"),
            reason.label("reason"),
        )
        .select_from(candidates)
        .outerjoin(
            named,
            and_(named.tenant_id == tenant_id, named.external_id == candidates.c.account_ref),
        )
        .join(contact_links, true())
        .join(domain_links, true())
    )


def _follows_rules(response: type[SurveyResponse]) -> ColumnElement[bool]:
    """Build the condition that the match rules decide the response's account.

    It is false for a response assigned by hand. It is also false for a matched response
    whose personal data was erased, because its email may have been the evidence.
    """
    return and_(
        response.matched_by.is_distinct_from(MatchRule.MANUAL.value),
        or_(response.erased_at.is_(None), response.account_id.is_(None)),
    )


# The scopes of `resolve_accounts`: a column of `responses` and the type of its values.
_RESOLVE_SCOPES: dict[str, Any] = {
    "id": BigInteger,
    "account_ref": Text,
    "email_key": Text,
    "email_domain": Text,
}


@cache
def _resolve_statement(columns: tuple[str, ...]) -> Any:
    """Build the resolution update for the scopes on `columns` once, with the tenant id as
    parameter `resolve_tenant_id` and each scope's values as `resolve_<column>_values`.

    Each scope's values drive one index lookup per value. OFFSET 0 keeps PostgreSQL from
    flattening the LATERAL subquery into a join, which the generic plans of asyncpg's
    prepared statements can run as a comparison of every stored row with the whole array
    (seconds for 10,000 ids, as `column = ANY($1)` did too).
    """
    tenant_id = bindparam("resolve_tenant_id", type_=SurveyResponse.tenant_id.type)
    selects = []
    for column in columns:
        array_type = ARRAY(_RESOLVE_SCOPES[column])
        scope_values = (
            func.unnest(cast(bindparam(f"resolve_{column}_values", type_=array_type), array_type))
            .table_valued("value")
            .render_derived()
        )
        stored = aliased(SurveyResponse, name="stored")
        matches = (
            select(
                stored.tenant_id,
                stored.id,
                stored.account_ref,
                stored.email_key,
                stored.email_domain,
            )
            .where(
                stored.tenant_id == tenant_id,
                getattr(stored, column) == scope_values.c.value,
                _follows_rules(stored),
            )
            .offset(0)
            .lateral("matches")
        )
        selects.append(select(matches).select_from(scope_values).join(matches, true()))
    candidates = union(*selects).cte("candidates")
    resolved = _resolution(tenant_id, candidates).subquery("resolved")
    return (
        update(SurveyResponse)
        .where(
            # Reached through the resolved rows, which are all the tenant's, and not
            # restricted to the tenant directly. With a direct restriction, a low estimate
            # of the tenant's responses can make the planner run the resolution once per
            # response.
            SurveyResponse.tenant_id == resolved.c.tenant_id,
            SurveyResponse.id == resolved.c.id,
            # Checked again on the row being updated, because a concurrent manual
            # assignment may have committed since the candidates were read.
            _follows_rules(SurveyResponse),
            tuple_(SurveyResponse.account_id, SurveyResponse.matched_by).is_distinct_from(
                tuple_(resolved.c.account_id, resolved.c.matched_by)
            ),
        )
        .values(
            account_id=resolved.c.account_id,
            matched_by=resolved.c.matched_by,
            merged_from_account_id=resolved.c.merged_from_account_id,
        )
    )


async def resolve_accounts(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    response_ids: Sequence[int] = (),
    account_refs: Sequence[str] = (),
    email_keys: Sequence[str] = (),
    domains: Sequence[str] = (),
) -> int:
    """Recompute the account of the responses in scope from the match rules, in one statement.

    The scope is every response that has one of `response_ids`, names one of
    `account_refs`, has one of `email_keys` (lower-cased emails) or has an email at one of
    `domains`. With all four empty, nothing is done. Responses assigned by hand keep their
    account. So do matched responses whose personal data was erased, because the email
    that matched them is gone. Returns the number of responses whose account changed.
    """
    scopes = {
        "id": response_ids,
        "account_ref": account_refs,
        "email_key": email_keys,
        "email_domain": domains,
    }
    parameters: dict[str, Any] = {
        f"resolve_{column}_values": list(values) for column, values in scopes.items() if values
    }
    if not parameters:
        return 0
    columns = tuple(column for column, values in scopes.items() if values)
    parameters["resolve_tenant_id"] = tenant_id
    result = await session.execute(_resolve_statement(columns), parameters)
    return int(getattr(result, "rowcount", 0) or 0)


async def list_unmatched(
    session: AsyncSession, tenant_id: uuid.UUID, *, after_id: int | None, limit: int
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Return unmatched responses in id order, each with the reason no rule matched it."""
    unmatched = aliased(SurveyResponse, name="unmatched")
    page = (
        select(
            unmatched.tenant_id,
            unmatched.id,
            unmatched.account_ref,
            unmatched.email_key,
            unmatched.email_domain,
        )
        .where(unmatched.tenant_id == tenant_id, unmatched.account_id.is_(None))
        .order_by(unmatched.id)
        .limit(limit)
    )
    if after_id is not None:
        page = page.where(unmatched.id > after_id)
    resolution = _resolution(tenant_id, page.cte("page")).subquery("resolution")
    statement = (
        select(SurveyResponse, resolution.c.reason)
        .join(resolution, resolution.c.id == SurveyResponse.id)
        .where(SurveyResponse.tenant_id == tenant_id)
        .order_by(SurveyResponse.id)
    )
    rows: Sequence[Row[*tuple[Any, ...]]] = (await session.execute(statement)).all()
    return rows


async def assign_account(
    session: AsyncSession, tenant_id: uuid.UUID, response_pk: int, account_external_id: str
) -> bool:
    """Assign the response to the account by hand; False when no such account exists.

    An account merged away stands for its survivor, as in `_resolution`.
    """
    named = (
        select(Account.id, Account.survivor_id)
        .where(Account.tenant_id == tenant_id, Account.external_id == account_external_id)
        .subquery("named")
    )
    account_id = select(func.coalesce(named.c.survivor_id, named.c.id)).scalar_subquery()
    merged_from = select(
        func.nullif(named.c.id, func.coalesce(named.c.survivor_id, named.c.id))
    ).scalar_subquery()
    statement = (
        update(SurveyResponse)
        .where(
            SurveyResponse.tenant_id == tenant_id,
            SurveyResponse.id == response_pk,
            account_id.is_not(None),
        )
        .values(
            account_id=account_id,
            matched_by=MatchRule.MANUAL.value,
            merged_from_account_id=merged_from,
        )
        .returning(SurveyResponse.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def clear_assignment(session: AsyncSession, tenant_id: uuid.UUID, response_pk: int) -> None:
    """Remove a manual assignment, leaving the response unmatched until it is resolved."""
    await session.execute(
        update(SurveyResponse)
        .where(
            SurveyResponse.tenant_id == tenant_id,
            SurveyResponse.id == response_pk,
            SurveyResponse.matched_by == MatchRule.MANUAL.value,
        )
        .values(account_id=None, matched_by=None, merged_from_account_id=None)
    )


async def delete_response(
    session: AsyncSession, tenant_id: uuid.UUID, source: str, response_id: str
) -> bool:
    statement = (
        delete(SurveyResponse)
        .where(
            SurveyResponse.tenant_id == tenant_id,
            SurveyResponse.source == source,
            SurveyResponse.response_id == response_id,
        )
        .returning(SurveyResponse.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def erase_email(
    session: AsyncSession, tenant_id: uuid.UUID, email: str
) -> Sequence[tuple[str, str]]:
    """Clear the email and comment of every response with this email, in any letter case.

    Score and account stay. Returns the (source, response_id) of each response changed.
    """
    statement = (
        update(SurveyResponse)
        .where(
            SurveyResponse.tenant_id == tenant_id,
            SurveyResponse.email_key == func.lower(func.btrim(email)),
        )
        .values(email=None, comment=None, erased_at=func.now())
        .returning(SurveyResponse.source, SurveyResponse.response_id)
    )
    return (await session.execute(statement)).all()


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


async def move_to_survivor(
    session: AsyncSession, tenant_id: uuid.UUID, from_id: int, to_id: int
) -> int:
    """Move the responses of a merged-away account to the survivor; return how many.

    Each keeps the account it belonged to before its first merge, so reports of periods
    before the merge still count it there.
    """
    result = await session.execute(
        update(SurveyResponse)
        .where(SurveyResponse.tenant_id == tenant_id, SurveyResponse.account_id == from_id)
        .values(
            account_id=to_id,
            merged_from_account_id=func.coalesce(
                SurveyResponse.merged_from_account_id, SurveyResponse.account_id
            ),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
