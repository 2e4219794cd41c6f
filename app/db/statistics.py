"""Fresh planner statistics for tables that grew fast, without waiting for autovacuum.

PostgreSQL plans from each table's statistics, and a connection keeps the plans of its
prepared statements and of the foreign key checks it ran until those statistics change.
On a new database the tables start empty, and plans made then go badly wrong once the
tables fill. A plan made while `accounts` had a few rows looks an account up through an
index that matches only `tenant_id`, and keeps doing so once the table has thousands of
rows: on PostgreSQL 15 the second batch of 10,000 new accounts took 14 to 17 s instead of
0.5 s, because each foreign key check of a revenue record read every account of the
tenant. Reports run right after the first webhook deliveries into an empty `responses`
table took 11 s instead of 2.8 s. Coverage over 80,000 new accounts passed the 30 s
statement timeout until the quarter-state tables were analyzed, and took 0.2 s after. Autovacuum
analyzes a table after a tenth of it changed, but only on its next round, up to a minute
later (`autovacuum_naptime`), and not at all where it is turned off.

So the service analyzes the watched tables that changed by much since their last
analysis (`analyze_changed_tables`): every `REVCOV_STATISTICS_CHECK_INTERVAL_SECONDS`
(`run_statistics_loop`), and after the commit of a transaction that inserted at least
`MIN_ROWS` rows (`analyze_after_commit`), so that a bulk import's next batch is planned
afresh. A transaction about to write that many rows first drops its connection's cached
plans (`before_large_write`), because plans made while the tables were nearly empty
would serve the whole batch. A large table needs many changed rows to pass the bars, so
all of this costs an ANALYZE only while a table is young. Tables the database role does
not own are left to autovacuum.
"""

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.types import BigInteger, Text

from app.errors import driver_error, sqlstate

log = structlog.get_logger()

# The tables that reports, ingest and bulk writes read, in the order they are analyzed.
WATCHED_TABLES = (
    "account_quarter_scores",
    "accounts",
    "contacts",
    "respondent_quarter_scores",
    "responses",
    "revenue_records",
)

# Rows a transaction must insert for the checks before and after it.
MIN_ROWS = 1_000

# The defaults of autovacuum_analyze_scale_factor and autovacuum_analyze_threshold.
GROWTH_FRACTION = 0.1
CHANGED_ROWS_THRESHOLD = 50

# ANALYZE reads a sample of at most 30,000 rows at the default statistics target, so it is
# quick. The limit keeps a slow one from delaying the response after a commit for long.
ANALYZE_TIMEOUT_MS = 5_000

_INSERTED_KEY = "revcov.inserted_rows"

# pg_has_role(owner, 'USAGE') is true for the owner, its members and superusers, the roles
# that may analyze a table before PostgreSQL 17.
#
# The counts of changed rows reach pg_stat_user_tables up to seconds after a commit, so
# the rows that the caller knows it inserted count as well. Rows of transactions still
# running count in neither: a table analyzed while only such rows fill it would look
# empty to the planner, as its file size would not.
_CHANGED_TABLES = text(
    "SELECT s.relname, statement_timestamp() AS checked_at "
    "FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
    "LEFT JOIN unnest(CAST(:inserted_tables AS text[]), CAST(:inserted_rows AS bigint[])) "
    "AS i (relname, row_count) ON i.relname = s.relname "
    "WHERE s.relid = ANY(CAST(:tables AS regclass[])) AND pg_has_role(c.relowner, 'USAGE') "
    "AND greatest(s.n_mod_since_analyze, i.row_count) "
    "> :threshold + :fraction * greatest(c.reltuples, 0) "
    "ORDER BY s.relname"
).bindparams(
    bindparam("tables", type_=ARRAY(Text)),
    bindparam("inserted_tables", type_=ARRAY(Text)),
    bindparam("inserted_rows", type_=ARRAY(BigInteger)),
)

_UNOWNED_TABLES = text(
    "SELECT relname FROM pg_class "
    "WHERE oid = ANY(CAST(:tables AS regclass[])) AND NOT pg_has_role(relowner, 'USAGE') "
    "ORDER BY relname"
).bindparams(bindparam("tables", type_=ARRAY(Text)))

# How long the loop leaves a table alone after another ANALYZE or VACUUM had it locked,
# so that a long VACUUM does not bring a skipped ANALYZE, and PostgreSQL's warning about
# it, at every check.
SKIPPED_RETRY_SECONDS = 60.0

# A new transaction reads the statistics views afresh (stats_fetch_consistency).
_ANALYZED_SINCE = text(
    "SELECT relname FROM pg_stat_user_tables "
    "WHERE relname = ANY(:tables) AND last_analyze >= :since ORDER BY relname"
).bindparams(bindparam("tables", type_=ARRAY(Text)))


def record_inserted(session: AsyncSession, table: str, rows: int) -> None:
    """Add `rows` to the rows the session's transaction inserted into `table`."""
    if table not in WATCHED_TABLES:
        raise ValueError(f"{table!r} is not watched; add it to WATCHED_TABLES")
    inserted: dict[str, int] = session.info.setdefault(_INSERTED_KEY, {})
    inserted[table] = inserted.get(table, 0) + rows


async def before_large_write(session: AsyncSession, rows: int) -> None:
    """Drop the connection's cached plans when the transaction is about to write at least
    `MIN_ROWS` rows, so that they are made again for the tables' current sizes."""
    if rows >= MIN_ROWS:
        await session.execute(text("DISCARD PLANS"))


async def analyze_after_commit(session: AsyncSession) -> None:
    """Run `analyze_changed_tables` after a commit that inserted at least `MIN_ROWS` rows.

    A failure is logged and not raised, because the data is committed.
    """
    inserted: dict[str, int] = session.info.pop(_INSERTED_KEY, {})
    if sum(inserted.values()) < MIN_ROWS:
        return
    try:
        await analyze_changed_tables(session, inserted)
    except SQLAlchemyError as error:
        await session.rollback()
        _log_failure(log.warning, "statistics.analyze_failed", error)


@dataclass(frozen=True)
class AnalyzeResult:
    """The tables a check analyzed, and those it skipped because they were locked."""

    analyzed: list[str]
    skipped: list[str]


async def analyze_changed_tables(
    session: AsyncSession,
    inserted: Mapping[str, int] | None = None,
    exclude: Collection[str] = (),
) -> AnalyzeResult:
    """Analyze the watched tables, other than `exclude`, that changed by much since their
    last analysis.

    A table changed by much when more of its rows changed than `CHANGED_ROWS_THRESHOLD`
    plus `GROWTH_FRACTION` of the rows counted then (autovacuum's default rule), counting
    the rows that `inserted` lists as inserted by a committed transaction. Each table is
    analyzed in a transaction of its own. A table locked by another ANALYZE or VACUUM is
    skipped, and one the role may not analyze is left out. A table counts as analyzed
    when its `last_analyze` moved past the check, by this ANALYZE or another one.
    """
    inserted = inserted or {}
    parameters = {
        "tables": [table for table in WATCHED_TABLES if table not in exclude],
        "inserted_tables": list(inserted),
        "inserted_rows": list(inserted.values()),
        "threshold": CHANGED_ROWS_THRESHOLD,
        "fraction": GROWTH_FRACTION,
    }
    rows = (await session.execute(_CHANGED_TABLES, parameters)).all()
    await session.commit()
    if not rows:
        return AnalyzeResult(analyzed=[], skipped=[])
    changed = [row.relname for row in rows]
    checked_at: datetime = rows[0].checked_at
    for table in changed:
        await session.execute(text(f"SET LOCAL statement_timeout = {ANALYZE_TIMEOUT_MS:d}"))
        await session.execute(text(f"ANALYZE (SKIP_LOCKED) {table}"))
        await session.commit()
    since = {"tables": changed, "since": checked_at}
    analyzed = list((await session.execute(_ANALYZED_SINCE, since)).scalars())
    await session.commit()
    if analyzed:
        log.info("statistics.analyzed", tables=analyzed)
    skipped = sorted(set(changed) - set(analyzed))
    if skipped:
        log.info("statistics.analyze_skipped", tables=skipped)
    return AnalyzeResult(analyzed=analyzed, skipped=skipped)


async def run_statistics_loop(engine: AsyncEngine, interval_seconds: float) -> None:
    """Run `analyze_changed_tables` every `interval_seconds` until cancelled, or return at
    once when `interval_seconds` is 0.

    The first check warns once about watched tables the role does not own, which only
    autovacuum can analyze. A table skipped because it was locked waits
    `SKIPPED_RETRY_SECONDS`. A failed check is logged, the first of a run of failures as a
    warning, and retried.
    """
    if interval_seconds == 0:
        return
    failing = False
    owners_checked = False
    retry_at: dict[str, float] = {}
    while True:
        await asyncio.sleep(interval_seconds)
        now = time.monotonic()
        waiting = {table for table, moment in retry_at.items() if moment > now}
        try:
            async with AsyncSession(engine) as session:
                if not owners_checked:
                    await _warn_unowned_tables(session)
                    owners_checked = True
                result = await analyze_changed_tables(session, exclude=waiting)
        except (SQLAlchemyError, OSError) as error:
            _log_failure(log.debug if failing else log.warning, "statistics.check_failed", error)
            failing = True
            continue
        failing = False
        retry_at.update((table, now + SKIPPED_RETRY_SECONDS) for table in result.skipped)


async def _warn_unowned_tables(session: AsyncSession) -> None:
    parameters = {"tables": list(WATCHED_TABLES)}
    unowned = list((await session.execute(_UNOWNED_TABLES, parameters)).scalars())
    await session.commit()
    if unowned:
        log.warning(
            "statistics.tables_not_owned",
            tables=unowned,
            detail="the database role cannot analyze these tables, so only autovacuum "
            "refreshes their statistics; keep autovacuum on",
        )


def _log_failure(method: Callable[..., Any], event: str, error: Exception) -> None:
    if isinstance(error, DBAPIError):
        method(event, error=driver_error(error), sqlstate=sqlstate(error) or None)
    else:
        method(event, error=type(error).__name__)
