"""Fresh planner statistics after a transaction grows a table by much.

A PostgreSQL connection keeps the plans of its prepared statements and of the foreign key
checks it ran until the statistics of a table they read change. A plan made while
`accounts` had a few rows can look an account up through an index that matches only
`tenant_id`, and keep doing so once the table has thousands of rows. On a new database
(PostgreSQL 15), the second batch of 10,000 new accounts took 14 to 17 s instead of 0.5 s,
because each foreign key check of a revenue record read every account of the tenant.
Autovacuum analyzes a table after a tenth of it changed, but only on its next round, up to
a minute later, and a bulk import sends its next batch at once.

So services record how many rows they inserted (`record_growth`), and after the commit
`analyze_grown_tables` analyzes each table that grew by at least `MIN_ROWS` rows and by
more than `GROWTH_FRACTION` of the rows it had at its last analysis. The new statistics
make every connection plan its statements again. A large table needs a large batch to
pass that bar, so the cost of an ANALYZE is paid only while a table is young.
"""

import structlog
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

log = structlog.get_logger()

# The tables whose growth is recorded; ANALYZE statements name only these.
TABLES = frozenset({"accounts", "revenue_records", "responses"})

# Fewer inserted rows than this never trigger an ANALYZE.
MIN_ROWS = 1_000

# autovacuum_analyze_scale_factor's default.
GROWTH_FRACTION = 0.1

_GROWTH_KEY = "revcov.table_growth"

_TABLE_ROWS = text(
    "SELECT relname, reltuples FROM pg_class WHERE oid = ANY(CAST(:tables AS regclass[]))"
).bindparams(bindparam("tables", type_=ARRAY(Text)))


def record_growth(session: AsyncSession, table: str, rows: int) -> None:
    """Add `rows` inserted into `table` by the session's transaction."""
    if table not in TABLES:
        raise ValueError(f"growth of {table!r} is not tracked; add it to TABLES")
    if rows > 0:
        growth: dict[str, int] = session.info.setdefault(_GROWTH_KEY, {})
        growth[table] = growth.get(table, 0) + rows


def discard_growth(session: AsyncSession) -> dict[str, int]:
    """Return the growth recorded in the session and forget it."""
    growth: dict[str, int] = session.info.pop(_GROWTH_KEY, {})
    return growth


async def analyze_grown_tables(session: AsyncSession) -> None:
    """Analyze the tables the committed transaction grew by much (see the module text).

    Call it after the commit. A failure is logged and not raised, because the data is
    committed and autovacuum analyzes the table later anyway.
    """
    growth = {table: rows for table, rows in discard_growth(session).items() if rows >= MIN_ROWS}
    if not growth:
        return
    try:
        result = await session.execute(_TABLE_ROWS, {"tables": sorted(growth)})
        # reltuples is -1 before the first analysis.
        analyzed_rows = {row.relname: max(row.reltuples, 0.0) for row in result}
        stale = sorted(
            table
            for table, rows in growth.items()
            if rows > GROWTH_FRACTION * analyzed_rows.get(table, 0.0)
        )
        for table in stale:
            # SKIP_LOCKED: a concurrent ANALYZE or VACUUM of the table is not waited for.
            await session.execute(text(f"ANALYZE (SKIP_LOCKED) {table}"))
        await session.commit()
    except SQLAlchemyError as error:
        await session.rollback()
        log.warning("statistics.analyze_failed", tables=sorted(growth), error=type(error).__name__)
        return
    if stale:
        log.info("statistics.analyzed", tables=stale, inserted={t: growth[t] for t in stale})
