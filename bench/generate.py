"""Seeded data generator that loads tenants straight into the migrated schema with COPY.

Each tenant gets accounts with long-tailed revenue, a revenue history over 8 quarters
(growth, contraction and churn to 0) and survey responses spread over the same quarters.
Some responses name no known account, some skip the NPS question, and several
respondents answer for one account, so every roll-up rule has work to do.
"""

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from app.db.session import create_engine, create_sessionmaker, session_scope
from app.settings import Settings
from app.tenancy import service as tenant_service

QUARTERS = 8
REGIONS = ("EMEA", "NA", "LATAM", "APAC", "ANZ", "DACH")
INDUSTRIES = (
    "Manufacturing",
    "Retail",
    "Finance",
    "Healthcare",
    "Software",
    "Energy",
    "Logistics",
    "Media",
)
OWNERS = tuple(f"owner-{index:02d}" for index in range(40))
# Share of responses whose account reference matches no account.
UNMATCHED_SHARE = 0.04
# Share of responses that skipped the NPS question (a null score).
SKIPPED_SHARE = 0.08
# Rows per COPY call, so a million-row table never sits in memory at once.
CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Quarter:
    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class GeneratedTenant:
    name: str
    tenant_id: uuid.UUID
    api_key: str
    accounts: int
    revenue_records: int
    responses: int


def recent_quarters(now: datetime, count: int = QUARTERS) -> list[Quarter]:
    """List the `count` quarters that ended before the quarter containing `now`, oldest first."""
    index = now.year * 4 + (now.month - 1) // 3
    quarters = []
    for offset in range(count, 0, -1):
        year, quarter = divmod(index - offset, 4)
        start = datetime(year, quarter * 3 + 1, 1, tzinfo=UTC)
        next_year, next_quarter = divmod(index - offset + 1, 4)
        end = datetime(next_year, next_quarter * 3 + 1, 1, tzinfo=UTC)
        quarters.append(Quarter(label=f"{year}-Q{quarter + 1}", start=start, end=end))
    return quarters


async def create_tenant(database_url: str, name: str) -> tuple[uuid.UUID, str]:
    """Create a tenant through the service's own code, so its API key works as usual."""
    engine = create_engine(database_url, Settings())
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            tenant, key = await tenant_service.create_tenant(session, name)
    finally:
        await engine.dispose()
    return tenant.id, key


def long_tailed_revenue(rng: random.Random) -> Decimal:
    """Draw an annual revenue: most accounts near 15M-50M, a few up to about 100 billion."""
    amount = min(15_000_000 * rng.paretovariate(1.16), 1e11)
    return Decimal(round(amount * 100)) / 100


def _chunks(
    rows: Iterator[tuple[object, ...]], size: int = CHUNK_ROWS
) -> Iterator[list[tuple[object, ...]]]:
    chunk: list[tuple[object, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _copy(
    connection: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterator[tuple[object, ...]],
) -> int:
    count = 0
    for chunk in _chunks(rows):
        await connection.copy_records_to_table(table, records=chunk, columns=list(columns))
        count += len(chunk)
    return count


def _account_rows(
    rng: random.Random, tenant_id: uuid.UUID, count: int
) -> Iterator[tuple[object, ...]]:
    for index in range(count):
        yield (
            tenant_id,
            f"acct-{index:07d}",
            f"Account {index}",
            rng.choice(REGIONS),
            rng.choice(INDUSTRIES),
            rng.choice(OWNERS),
        )


def _revenue_rows(
    rng: random.Random,
    tenant_id: uuid.UUID,
    account_ids: Sequence[int],
    quarters: Sequence[Quarter],
) -> Iterator[tuple[object, ...]]:
    """Yield 1-4 revenue records per account at random quarter starts; 3% churn to 0."""
    for account_id in account_ids:
        revenue = long_tailed_revenue(rng)
        changes = sorted(rng.sample(range(len(quarters)), rng.randint(1, 4)))
        for position, quarter_index in enumerate(changes):
            effective_at = quarters[quarter_index].start + timedelta(days=rng.randint(0, 60))
            if position == len(changes) - 1 and position > 0 and rng.random() < 0.03:
                amount = Decimal("0.00")
            else:
                factor = Decimal(str(round(rng.uniform(0.8, 1.3), 2)))
                amount = (revenue * factor).quantize(Decimal("0.01"))
            yield (tenant_id, account_id, effective_at, amount, "USD")


def _response_rows(
    rng: random.Random,
    tenant_id: uuid.UUID,
    account_ids: Sequence[int],
    responses: int,
    quarters: Sequence[Quarter],
) -> Iterator[tuple[object, ...]]:
    """Yield scored, skipped and unmatched responses; accounts get 1-4 distinct respondents."""
    first = quarters[0].start
    span = (quarters[-1].end - first).total_seconds()
    for index in range(responses):
        account_index = rng.randrange(len(account_ids))
        submitted_at = first + timedelta(seconds=rng.random() * span)
        score = None if rng.random() < SKIPPED_SHARE else min(10, max(0, round(rng.gauss(7.5, 2))))
        respondent = rng.randrange(4)
        if rng.random() < UNMATCHED_SHARE:
            account_ref: str | None = f"unknown-{account_index}"
            account_id: int | None = None
            matched_by = None
        else:
            account_ref = f"acct-{account_index:07d}"
            account_id = account_ids[account_index]
            matched_by = "account_external_id"
        email = f"user{respondent}@a{account_index}.example" if respondent else None
        yield (
            tenant_id,
            "typeform",
            f"r{index:09d}",
            account_ref,
            account_id,
            email,
            score,
            submitted_at,
            submitted_at,
            matched_by,
        )


async def load_tenant(
    dsn: str,
    database_url: str,
    name: str,
    *,
    accounts: int,
    responses_per_account: float,
    seed: int,
    quarters: Sequence[Quarter],
) -> GeneratedTenant:
    """Create a tenant and COPY its accounts, revenue history and responses in one transaction."""
    tenant_id, api_key = await create_tenant(database_url, name)
    rng = random.Random(f"{seed}:{name}")
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            # Each COPY of more than 10,000 responses would rebuild the tenant's quarter
            # state in its trigger. So the load skips the triggers, as a replica applying
            # changes does (this needs a superuser), and rebuilds the state once at the end.
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute("SET LOCAL work_mem = '256MB'")
            await _copy(
                connection,
                "accounts",
                ("tenant_id", "external_id", "name", "region", "industry", "owner"),
                _account_rows(rng, tenant_id, accounts),
            )
            rows = await connection.fetch(
                "SELECT id FROM accounts WHERE tenant_id = $1 ORDER BY external_id", tenant_id
            )
            account_ids = [row["id"] for row in rows]
            revenue_records = await _copy(
                connection,
                "revenue_records",
                ("tenant_id", "account_id", "effective_at", "amount", "currency"),
                _revenue_rows(rng, tenant_id, account_ids, quarters),
            )
            responses = await _copy(
                connection,
                "responses",
                (
                    "tenant_id",
                    "source",
                    "response_id",
                    "account_ref",
                    "account_id",
                    "email",
                    "score",
                    "submitted_at",
                    "source_updated_at",
                    "matched_by",
                ),
                _response_rows(
                    rng, tenant_id, account_ids, round(accounts * responses_per_account), quarters
                ),
            )
            await connection.execute("SET LOCAL session_replication_role = origin")
            await connection.execute("SELECT revcov_rebuild_scores(ARRAY[$1::uuid])", tenant_id)
    finally:
        await connection.close()
    return GeneratedTenant(
        name=name,
        tenant_id=tenant_id,
        api_key=api_key,
        accounts=accounts,
        revenue_records=revenue_records,
        responses=responses,
    )


async def analyze(dsn: str) -> None:
    """Refresh planner statistics after bulk loads, as autovacuum would do later."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
