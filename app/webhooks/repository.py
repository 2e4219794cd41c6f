import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from app.responses.repository import QUARTER_STATE_LOCK_CLASS, RESOLUTION_LOCK_CLASS
from app.responses.schemas import ResponseIn
from app.webhooks.models import WebhookDelivery, WebhookDeliveryKey, WebhookEndpoint


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def get_endpoint(
    session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: str
) -> WebhookEndpoint | None:
    statement = select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id == endpoint_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def update_endpoint(
    session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: str, values: dict[str, Any]
) -> WebhookEndpoint:
    statement = (
        update(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id == endpoint_id)
        .values(**values)
        .returning(WebhookEndpoint)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def list_endpoints(
    session: AsyncSession, tenant_id: uuid.UUID, *, after_id: str | None, limit: int
) -> Sequence[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(WebhookEndpoint.id > after_id)
    return (await session.scalars(statement)).all()


async def insert_delivery(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Store a delivery once per (tenant, endpoint, delivery key) and return its id; None
    when it is already stored.

    The key goes into `webhook_delivery_keys` first. A concurrent copy waits on its primary
    key until the first commits, then gets None.
    """
    claimed = await session.execute(
        insert(WebhookDeliveryKey)
        .values(
            tenant_id=values["tenant_id"],
            endpoint_id=values["endpoint_id"],
            delivery_key=values["delivery_key"],
            received_at=values["received_at"],
        )
        .on_conflict_do_nothing()
        .returning(WebhookDeliveryKey.delivery_key)
    )
    if claimed.scalar_one_or_none() is None:
        return None
    statement = insert(WebhookDelivery).values(**values).returning(WebhookDelivery.id)
    delivery_id: int = (await session.execute(statement)).scalar_one()
    return delivery_id


async def get_delivery(
    session: AsyncSession, tenant_id: uuid.UUID, delivery_id: int, *, for_update: bool = False
) -> WebhookDelivery | None:
    statement = select(WebhookDelivery).where(
        WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id
    )
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_deliveries(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    endpoint_id: str | None,
    after_id: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id)
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    if endpoint_id is not None:
        statement = statement.where(WebhookDelivery.endpoint_id == endpoint_id)
    if after_id is not None:
        statement = statement.where(WebhookDelivery.id > after_id)
    return (await session.scalars(statement)).all()


async def set_delivery_outcome(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    delivery_id: int,
    *,
    status: str,
    event_type: str | None,
    response_id: str | None,
    error: str | None,
    fetch: dict[str, str] | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id)
        .values(
            status=status,
            event_type=event_type,
            response_id=response_id,
            error=error,
            fetch=fetch,
            next_attempt_at=next_attempt_at,
            # A delivery that becomes pending again (a replay) gets a fresh set of attempts.
            **({"attempts": 0} if status == "pending" else {}),
        )
    )


async def claim_due_deliveries(
    session: AsyncSession, *, due_by: datetime, limit: int
) -> Sequence[WebhookDelivery]:
    """Lock up to `limit` pending deliveries of every tenant whose next fetch is due by
    `due_by`, the longest-waiting first.

    This read spans tenants because one fetcher serves them all. Rows that another
    transaction holds are skipped (`FOR UPDATE SKIP LOCKED`), and the locks last until this
    transaction ends, so concurrent fetchers never claim the same delivery.
    """
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= due_by)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .options(
            defer(WebhookDelivery.body, raiseload=True),
            defer(WebhookDelivery.headers, raiseload=True),
        )
    )
    return (await session.scalars(statement)).all()


async def set_fetch_outcome(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    delivery_id: int,
    *,
    status: str,
    attempts: int,
    next_attempt_at: datetime | None,
    error: str | None,
    response_id: str | None = None,
) -> None:
    """Record one fetch attempt of a thin payload. The event type and fetch stay as stored."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id)
        .values(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            error=error,
            response_id=response_id,
        )
    )


# The statements below run on the raw asyncpg connection, for the ingest fast path
# (`app.webhooks.ingest`), where building and running ORM statements cost more than
# PostgreSQL spends on them.

# A digest of the endpoint settings that verifying and mapping a delivery depend on. A
# cached endpoint is used only while the stored row still has the same digest.
_ENDPOINT_FINGERPRINT = (
    "md5(ROW(e.source, e.secrets, e.account_field, e.score_field, e.comment_field, "
    "e.timezone, e.token, e.api_base_url, e.api_token)::text)"
)

FETCH_ENDPOINT = f"""
SELECT e.tenant_id, e.id, e.source, e.secrets, e.account_field, e.score_field,
       e.comment_field, e.timezone, e.token, e.api_base_url, e.api_token, e.created_at,
       {_ENDPOINT_FINGERPRINT} AS fingerprint
FROM webhook_endpoints AS e
WHERE e.tenant_id = $1 AND e.id = $2
"""

# The upsert of a response (aliased `stored`) with the version rules of
# `app.responses.repository._upsert_statement`.
_RESPONSE_UPSERT_RULES = """
    ON CONFLICT (tenant_id, source, response_id) DO UPDATE SET
        account_ref = excluded.account_ref,
        email = excluded.email,
        score = excluded.score,
        comment = excluded.comment,
        submitted_at = excluded.submitted_at,
        source_updated_at = coalesce(excluded.source_updated_at, stored.source_updated_at),
        received_at = now(),
        erased_at = NULL,
        account_id = CASE WHEN stored.matched_by = 'manual'
            THEN stored.account_id ELSE excluded.account_id END,
        matched_by = CASE WHEN stored.matched_by = 'manual'
            THEN stored.matched_by ELSE excluded.matched_by END,
        merged_from_account_id = CASE
            WHEN stored.matched_by = 'manual'
                OR (stored.account_id, stored.matched_by)
                    IS NOT DISTINCT FROM (excluded.account_id, excluded.matched_by)
            THEN stored.merged_from_account_id
            ELSE excluded.merged_from_account_id END
    WHERE (
        excluded.source_updated_at IS NOT NULL AND stored.source_updated_at IS NOT NULL
        AND excluded.source_updated_at > stored.source_updated_at
    ) OR (
        NOT (excluded.source_updated_at IS NOT NULL AND stored.source_updated_at IS NOT NULL)
        AND stored.erased_at IS NULL
        AND (stored.account_ref, stored.email, stored.score, stored.comment,
             stored.submitted_at, stored.source_updated_at)
            IS DISTINCT FROM (excluded.account_ref, excluded.email, excluded.score,
                              excluded.comment, excluded.submitted_at,
                              excluded.source_updated_at)
    )
"""

# Stores a processed delivery and writes its response in one statement, so that it is
# atomic and durable on its own in autocommit. It first takes the tenant's resolution and
# quarter-state locks shared, in the order of `LOCK_INGEST_TENANTS` and before any row
# lock. So a group commit that holds the state lock never waits for this statement's rows
# while this statement waits for the lock. The other steps follow the ORM path: claim the
# delivery key (a concurrent copy waits on it and then gets nothing), match the account
# under the resolution lock (`revcov_lock_and_match_response`), upsert
# the response with the version rules of `app.responses.repository._upsert_statement`,
# and insert the delivery with its outcome. The match is set in the upsert itself, so it
# follows `resolve_accounts`: a manual assignment is kept, and `merged_from_account_id`
# changes only with the account or the rule. Nothing is written unless the endpoint still
# has the settings the delivery was verified and mapped with (`$3`).
INGEST_PROCESSED = f"""
WITH locked AS (
    SELECT pg_advisory_xact_lock_shared({RESOLUTION_LOCK_CLASS}, hashtext($1::uuid::text)),
           pg_advisory_xact_lock_shared({QUARTER_STATE_LOCK_CLASS}, hashtext($1::uuid::text))
),
endpoint AS (
    SELECT e.tenant_id, e.id
    FROM webhook_endpoints AS e, locked
    WHERE e.tenant_id = $1 AND e.id = $2 AND {_ENDPOINT_FINGERPRINT} = $3
),
claimed AS (
    INSERT INTO webhook_delivery_keys (tenant_id, endpoint_id, delivery_key, received_at)
    SELECT endpoint.tenant_id, endpoint.id, $4, $5 FROM endpoint
    ON CONFLICT DO NOTHING
    RETURNING tenant_id
),
incoming AS (
    SELECT claimed.tenant_id, $6::text AS source, $7::text AS response_id,
           $8::text AS account_ref, $9::text AS email, $10::smallint AS score,
           $11::text AS comment, $12::timestamptz AS submitted_at,
           $13::timestamptz AS source_updated_at,
           match.account_id, match.matched_by, match.merged_from_account_id
    FROM claimed
    CROSS JOIN LATERAL revcov_lock_and_match_response(
        claimed.tenant_id,
        $8::text,
        nullif(lower(btrim($9::text)), ''),
        lower(substring(btrim($9::text) from '@([^@]+)$'))
    ) AS match
),
written AS (
    INSERT INTO responses AS stored (
        tenant_id, source, response_id, account_ref, email, score, comment, submitted_at,
        source_updated_at, account_id, matched_by, merged_from_account_id
    )
    SELECT * FROM incoming
    {_RESPONSE_UPSERT_RULES}
    RETURNING stored.account_id, (xmax = 0) AS inserted
),
delivery AS (
    INSERT INTO webhook_deliveries (
        tenant_id, endpoint_id, delivery_key, source, event_type, status, response_id,
        content_type, headers, body, received_at
    )
    SELECT claimed.tenant_id, $2, $4, $14, $15, 'processed', $7, $16, $17::jsonb, $18, $5
    FROM claimed
    RETURNING id
)
SELECT
    EXISTS (SELECT FROM endpoint) AS endpoint_current,
    (SELECT id FROM delivery) AS delivery_id,
    (SELECT inserted FROM written) AS inserted,
    coalesce(
        (SELECT account_id IS NOT NULL FROM written),
        (SELECT r.account_id IS NOT NULL FROM responses AS r
         WHERE r.tenant_id = $1 AND r.source = $6 AND r.response_id = $7)
    ) AS matched
"""

# The batch form of `INGEST_PROCESSED`, for group commit (`app.webhooks.group_commit`).
# It takes the same steps for arrays of deliveries, one element each, in one statement.
# The caller never puts two deliveries with the same delivery key or the same response in
# one call, because one statement cannot claim a key or update a row twice. It first takes
# the locks of `LOCK_INGEST_TENANTS` for its tenants, before any row lock, so it can run
# alone in autocommit. In a transaction that has taken them already, taking them again
# changes nothing. It returns one row per delivery in input order, with the columns of
# `INGEST_PROCESSED`.
INGEST_PROCESSED_BATCH = f"""
WITH input AS (
    SELECT *
    FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::smallint[], $11::text[],
        $12::timestamptz[], $13::timestamptz[], $14::text[], $15::text[], $16::text[],
        $17::text[], $18::bytea[]
    ) WITH ORDINALITY AS i (
        tenant_id, endpoint_id, fingerprint, delivery_key, received_at, source,
        response_id, account_ref, email, score, comment, submitted_at, source_updated_at,
        delivery_source, event_type, content_type, headers, body, position
    )
),
locked AS (
    SELECT pg_advisory_xact_lock_shared({RESOLUTION_LOCK_CLASS}, hashtext(ordered.id::text)),
           pg_advisory_xact_lock({QUARTER_STATE_LOCK_CLASS}, hashtext(ordered.id::text))
    FROM (SELECT DISTINCT tenant_id AS id FROM input ORDER BY id) AS ordered
),
endpoint AS (
    SELECT i.position
    FROM input AS i
    JOIN webhook_endpoints AS e ON e.tenant_id = i.tenant_id AND e.id = i.endpoint_id
    -- Counting reads every row of `locked`, so all the locks are taken before the first
    -- delivery key is claimed.
    WHERE {_ENDPOINT_FINGERPRINT} = i.fingerprint AND (SELECT count(*) FROM locked) > 0
),
claimed AS (
    INSERT INTO webhook_delivery_keys (tenant_id, endpoint_id, delivery_key, received_at)
    SELECT i.tenant_id, i.endpoint_id, i.delivery_key, i.received_at
    FROM input AS i
    JOIN endpoint USING (position)
    ORDER BY i.position
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, endpoint_id, delivery_key
),
claimed_input AS (
    SELECT i.*
    FROM input AS i
    JOIN claimed AS c
        ON c.tenant_id = i.tenant_id AND c.endpoint_id = i.endpoint_id
        AND c.delivery_key = i.delivery_key
),
incoming AS (
    SELECT i.tenant_id, i.source, i.response_id, i.account_ref, i.email, i.score,
           i.comment, i.submitted_at, i.source_updated_at,
           match.account_id, match.matched_by, match.merged_from_account_id
    FROM claimed_input AS i
    CROSS JOIN LATERAL revcov_lock_and_match_response(
        i.tenant_id,
        i.account_ref,
        nullif(lower(btrim(i.email)), ''),
        lower(substring(btrim(i.email) from '@([^@]+)$'))
    ) AS match
    ORDER BY i.position
),
written AS (
    INSERT INTO responses AS stored (
        tenant_id, source, response_id, account_ref, email, score, comment, submitted_at,
        source_updated_at, account_id, matched_by, merged_from_account_id
    )
    SELECT * FROM incoming
    {_RESPONSE_UPSERT_RULES}
    RETURNING stored.tenant_id, stored.source, stored.response_id, stored.account_id,
              (xmax = 0) AS inserted
),
delivery AS (
    INSERT INTO webhook_deliveries (
        tenant_id, endpoint_id, delivery_key, source, event_type, status, response_id,
        content_type, headers, body, received_at
    )
    SELECT i.tenant_id, i.endpoint_id, i.delivery_key, i.delivery_source, i.event_type,
           'processed', i.response_id, i.content_type, i.headers::jsonb, i.body,
           i.received_at
    FROM claimed_input AS i
    ORDER BY i.position
    RETURNING tenant_id, endpoint_id, delivery_key, id
)
SELECT
    endpoint.position IS NOT NULL AS endpoint_current,
    d.id AS delivery_id,
    w.inserted,
    coalesce(
        w.account_id IS NOT NULL,
        (SELECT r.account_id IS NOT NULL FROM responses AS r
         WHERE r.tenant_id = i.tenant_id AND r.source = i.source
             AND r.response_id = i.response_id)
    ) AS matched
FROM input AS i
LEFT JOIN endpoint USING (position)
LEFT JOIN delivery AS d
    ON d.tenant_id = i.tenant_id AND d.endpoint_id = i.endpoint_id
    AND d.delivery_key = i.delivery_key
LEFT JOIN written AS w
    ON d.id IS NOT NULL AND w.tenant_id = i.tenant_id AND w.source = i.source
    AND w.response_id = i.response_id
ORDER BY i.position
"""

# Takes, per tenant in the order of its id, the resolution lock shared and then the
# quarter-state lock exclusively. This is the order of `write_responses` for several
# responses, and the order in which the state triggers lock several tenants.
# `{tenant_ids}` is an array of UUID literals (see `begin_and_lock_ingest_tenants`).
LOCK_INGEST_TENANTS = f"""
SELECT pg_advisory_xact_lock_shared({RESOLUTION_LOCK_CLASS}, hashtext(ordered.id::text)),
       pg_advisory_xact_lock({QUARTER_STATE_LOCK_CLASS}, hashtext(ordered.id::text))
FROM (SELECT DISTINCT id FROM unnest({{tenant_ids}}::uuid[]) AS id ORDER BY id) AS ordered
"""

IS_MATCHED = """
SELECT account_id IS NOT NULL FROM responses
WHERE tenant_id = $1 AND source = $2 AND response_id = $3
"""


async def fetch_endpoint_raw(
    connection: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: str
) -> asyncpg.Record | None:
    """Return the endpoint's row with its settings `fingerprint`, or None."""
    row: asyncpg.Record | None = await connection.fetchrow(FETCH_ENDPOINT, tenant_id, endpoint_id)
    return row


@dataclass(frozen=True)
class ProcessedDelivery:
    """A processed delivery to store: its columns and its mapped response."""

    fingerprint: str
    values: dict[str, Any]
    response: ResponseIn


def _ingest_parameters(delivery: ProcessedDelivery) -> tuple[Any, ...]:
    """Return the parameters of `INGEST_PROCESSED` for one delivery, in order."""
    values = delivery.values
    response = delivery.response
    return (
        values["tenant_id"],
        values["endpoint_id"],
        delivery.fingerprint,
        values["delivery_key"],
        values["received_at"],
        response.source,
        response.response_id,
        response.account_external_id,
        response.email,
        response.score,
        response.comment,
        response.submitted_at,
        response.updated_at,
        values["source"],
        values["event_type"],
        values["content_type"],
        json.dumps(values["headers"]),
        values["body"],
    )


async def ingest_processed(
    connection: asyncpg.Connection, delivery: ProcessedDelivery
) -> asyncpg.Record:
    """Store a processed delivery and write its response in one autocommit statement.

    The delivery's `values` are its columns, as for `insert_delivery`. Returns
    `endpoint_current` (false: nothing was written because the endpoint changed or is
    gone), `delivery_id` (null for a duplicate), `inserted` (null when the stored version
    of the response was kept) and `matched` (null when the response row is not visible
    to this statement's snapshot, which only a concurrent first write of it causes).
    """
    row: asyncpg.Record = await connection.fetchrow(INGEST_PROCESSED, *_ingest_parameters(delivery))
    return row


async def begin_and_lock_ingest_tenants(
    connection: asyncpg.Connection, tenant_ids: Sequence[uuid.UUID]
) -> None:
    """Start a transaction and lock the tenants for writing several responses (see
    `LOCK_INGEST_TENANTS`), in one round trip.

    Both statements go in one simple-protocol message, which cannot carry parameters, so
    the ids are written into it as literals.
    """
    for tenant_id in tenant_ids:
        # A UUID renders as hex digits and hyphens only, so it cannot end the literal.
        if not isinstance(tenant_id, uuid.UUID):
            raise TypeError(f"tenant id {tenant_id!r} is not a uuid.UUID")
    literals = ", ".join(f"'{tenant_id}'" for tenant_id in tenant_ids)
    lock = LOCK_INGEST_TENANTS.format(tenant_ids=f"ARRAY[{literals}]")
    await connection.execute(f"BEGIN;\n{lock}")


async def ingest_processed_batch(
    connection: asyncpg.Connection, deliveries: Sequence[ProcessedDelivery]
) -> list[asyncpg.Record]:
    """Store processed deliveries and write their responses in one statement.

    Returns one row per delivery, in order, with the columns of `ingest_processed`. No two
    deliveries may share a delivery key or a response.
    """
    # One array per parameter of `INGEST_PROCESSED`, in the same order.
    columns = list(zip(*(_ingest_parameters(item) for item in deliveries), strict=True))
    rows: list[asyncpg.Record] = await connection.fetch(
        INGEST_PROCESSED_BATCH, *(list(column) for column in columns)
    )
    return rows


async def is_matched_raw(
    connection: asyncpg.Connection, tenant_id: uuid.UUID, source: str, response_id: str
) -> bool:
    matched = await connection.fetchval(IS_MATCHED, tenant_id, source, response_id)
    return bool(matched)
