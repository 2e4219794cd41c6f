"""Account merges: a CRM merged two accounts, and one of them lives on as the survivor.

The merged-away account keeps its row, so its external id goes on resolving: later
deliveries and responses naming it count for the survivor, and revenue updates for it
effective from the merge on are the survivor's revenue. Its responses, contact links,
domains and children move to the survivor at once. In reports it stays in the revenue base
for periods whose revenue instant is before `effective_at`, with the responses it had, and
leaves the base from then on, so no revenue is counted twice.
"""

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.errors import AccountNotFoundError, InvalidMergeError
from app.accounts.models import Account
from app.accounts.schemas import AccountMergeRequest, AccountMergeResult, MergeMovedRead
from app.accounts.service import merged_error
from app.contacts import repository as contact_repository
from app.errors import InvalidField
from app.privacy import repository as audit_repository
from app.privacy.models import AuditAction, AuditEvent
from app.responses import service as response_service

log = structlog.get_logger()


def _invalid_into(into: str, reason: str) -> InvalidMergeError:
    return InvalidMergeError(
        f"Invalid into {into!r}: {reason}.",
        errors=[InvalidField(location="body.into", message=f"{reason} (got {into!r})")],
    )


async def _survivor(session: AsyncSession, tenant_id: uuid.UUID, into: Account) -> Account:
    if into.survivor_id is None:
        return into
    survivor = await session.get(Account, (tenant_id, into.survivor_id))
    assert survivor is not None
    return survivor


async def merge_account(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    external_id: str,
    body: AccountMergeRequest,
    *,
    actor_key_id: uuid.UUID | None = None,
) -> AccountMergeResult:
    """Merge the account into `body.into`, or confirm a merge already recorded.

    Raises AccountNotFoundError for an unknown account. Raises InvalidMergeError (422) for
    an unknown `into` or a merge into the account itself, also through a merge chain.
    Raises AccountMergedError (409) when the account was merged away before, into another
    account or at another instant.
    """
    # Both locks before any read: merges re-parent children, and they move responses,
    # contacts and domains that the match rules read.
    await repository.lock_hierarchy(session, tenant_id)
    await response_service.lock_account_resolution(session, tenant_id)

    merged = await repository.get_account(session, tenant_id, external_id)
    if merged is None:
        raise AccountNotFoundError(f"No account with external id {external_id!r}.")
    into = await repository.get_account(session, tenant_id, body.into)
    if into is None:
        raise _invalid_into(body.into, "no account has this external id; create it first")
    survivor = await _survivor(session, tenant_id, into)
    if merged.merged_into_id is not None:
        same_instant = body.effective_at is None or body.effective_at == merged.merged_at
        if merged.survivor_id == survivor.id and same_instant:
            assert merged.merged_at is not None
            return _result(merged, into, survivor, merged.merged_at, None)
        raise await merged_error(session, tenant_id, merged, action="merge")
    if survivor.id == merged.id:
        reason = "an account cannot be merged into itself"
        if into.id != merged.id:
            reason += f", and {body.into!r} was merged into {external_id!r}"
        raise _invalid_into(body.into, reason)

    effective_at = body.effective_at or datetime.now(UTC)
    moved, emails, domains = await _move_to_survivor(session, tenant_id, merged, survivor)
    await repository.mark_merged(
        session,
        tenant_id,
        merged.id,
        into_id=into.id,
        survivor_id=survivor.id,
        merged_at=effective_at,
    )
    # A contact or domain that both accounts listed was ambiguous and matched nothing, and
    # now it names the survivor alone. Resolved once the account is marked merged, so a
    # response naming it keeps counting for the survivor rather than going back to it.
    await response_service.resolve_accounts(session, tenant_id, email_keys=emails, domains=domains)

    result = _result(merged, into, survivor, effective_at, moved)
    event = await audit_repository.add_audit_event(
        session,
        AuditEvent(
            tenant_id=tenant_id,
            action=AuditAction.ACCOUNT_MERGED,
            actor_key_id=actor_key_id,
            counts=moved.model_dump(),
            details={
                "account_external_id": merged.external_id,
                "into_external_id": into.external_id,
                "survivor_external_id": survivor.external_id,
                "effective_at": effective_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            },
        ),
    )
    log.info(
        "account.merged",
        tenant_id=str(tenant_id),
        account_id=merged.id,
        survivor_id=survivor.id,
        audit_event_id=event.id,
        **moved.model_dump(),
    )
    return result


async def _move_to_survivor(
    session: AsyncSession, tenant_id: uuid.UUID, merged: Account, survivor: Account
) -> tuple[MergeMovedRead, list[str], list[str]]:
    """Move responses, contact links, domains and children from `merged` to `survivor`.

    Returns the counts, and the emails and domains moved. The caller matches their
    responses again once the account is marked merged.

    When the survivor is a descendant of the merged account, it takes that account's
    place under its parent first. The other children then move under the survivor, so the
    hierarchy stays free of cycles.
    """
    chain = await repository.ancestors(session, tenant_id, survivor.id)
    if merged.id in (account_id for account_id, _ in chain):
        await repository.set_parent(session, tenant_id, survivor.id, merged.parent_id)
    children = await repository.move_children(session, tenant_id, merged.id, survivor.id)

    responses = await response_service.move_responses(session, tenant_id, merged.id, survivor.id)
    emails = await contact_repository.move_links(session, tenant_id, merged.id, survivor.id)
    domains = await repository.move_domains(session, tenant_id, merged.id, survivor.id)
    moved = MergeMovedRead(
        responses=responses, contact_links=len(emails), domains=len(domains), children=children
    )
    return moved, list(emails), list(domains)


def _result(
    merged: Account,
    into: Account,
    survivor: Account,
    effective_at: datetime,
    moved: MergeMovedRead | None,
) -> AccountMergeResult:
    return AccountMergeResult(
        account_external_id=merged.external_id,
        into_external_id=into.external_id,
        survivor_external_id=survivor.external_id,
        effective_at=effective_at,
        moved=moved or MergeMovedRead(responses=0, contact_links=0, domains=0, children=0),
        replayed=moved is None,
    )
