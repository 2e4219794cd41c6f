"""Monthly partitions of raw webhook deliveries: create the coming ones, drop expired ones.

`webhook_deliveries` is partitioned by `received_at`, one partition per UTC month named
`webhook_deliveries_pYYYY_MM`, plus a default partition for rows of months without one.
Maintenance creates the partitions of the current and the next `MONTHS_AHEAD` months,
first moving any of their rows out of the default partition. It drops a partition once
its whole month is older than `webhook_delivery_retention_days`. Delivery keys, which
drop repeated deliveries, stay at least `DELIVERY_KEY_MARGIN` longer than their raw
deliveries, so a platform that retries late still gets `duplicate`. `serve` runs
maintenance at start and every hour, and `revcov maintain` runs it once.
"""

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import text
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.session import session_scope
from app.settings import Settings
from app.webhooks.dependencies import Clock

log = structlog.get_logger()

PARENT = "webhook_deliveries"
DEFAULT_PARTITION = "webhook_deliveries_default"
PARTITION_NAME = re.compile(r"^webhook_deliveries_p(\d{4})_(\d{2})$")
MONTHS_AHEAD = 2
DELIVERY_KEY_MARGIN = timedelta(days=7)
MAINTENANCE_INTERVAL_SECONDS = 3600.0
# Serialises maintenance of concurrent service processes; "revcovpt" in ASCII.
MAINTENANCE_LOCK_KEY = 0x72657663_6F767074


@dataclass
class MaintenanceResult:
    """The partitions created and dropped, and the rows deleted, by one maintenance run."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    deleted_from_default: int = 0
    deleted_keys: int = 0


def month_start(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_p{month:%Y_%m}"


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _literal(moment: datetime) -> str:
    # Partition bounds cannot be bind parameters; an ISO 8601 time is a safe literal.
    return f"'{moment.isoformat()}'"


async def list_monthly_partitions(session: AsyncSession) -> dict[str, datetime]:
    """Return the monthly partitions as name -> first instant of their month."""
    rows = await session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:parent AS regclass)"
        ),
        {"parent": PARENT},
    )
    partitions = {}
    for (name,) in rows:
        match = PARTITION_NAME.match(name)
        if match:
            partitions[name] = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
    return partitions


async def create_partition(session: AsyncSession, month: datetime) -> int:
    """Create the partition of `month` and move its rows out of the default partition;
    return how many rows moved."""
    name = partition_name(month)
    lower, upper = _literal(month), _literal(add_months(month, 1))
    in_month = f"received_at >= {lower} AND received_at < {upper}"

    await session.execute(
        text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    moved = await session.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE {in_month} RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        )
    )
    await session.execute(
        text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})")
    )
    return _rowcount(moved)


async def maintain(session: AsyncSession, now: datetime, retention: timedelta) -> MaintenanceResult:
    """Create the coming months' partitions, drop expired ones and delete expired keys."""
    result = MaintenanceResult()
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MAINTENANCE_LOCK_KEY})
    existing = await list_monthly_partitions(session)

    current = month_start(now)
    for offset in range(MONTHS_AHEAD + 1):
        month = add_months(current, offset)
        if partition_name(month) not in existing:
            result.moved_from_default += await create_partition(session, month)
            result.created.append(partition_name(month))

    cutoff = now - retention
    for name, month in sorted(existing.items()):
        if add_months(month, 1) <= cutoff:
            await session.execute(text(f"DROP TABLE {name}"))
            result.dropped.append(name)
    deleted = await session.execute(
        text(f"DELETE FROM {DEFAULT_PARTITION} WHERE received_at < :cutoff"), {"cutoff": cutoff}
    )
    result.deleted_from_default = _rowcount(deleted)
    # A partition goes once its month ends before `cutoff`, so a key is kept until its
    # month ends before `cutoff - DELIVERY_KEY_MARGIN`: at least the margin longer.
    keys = await session.execute(
        text("DELETE FROM webhook_delivery_keys WHERE received_at < :cutoff"),
        {"cutoff": month_start(cutoff - DELIVERY_KEY_MARGIN)},
    )
    result.deleted_keys = _rowcount(keys)
    return result


async def run_maintenance(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> MaintenanceResult:
    retention = timedelta(days=settings.webhook_delivery_retention_days)
    async with session_scope(sessionmaker) as session:
        result = await maintain(session, now, retention)
    log.info(
        "webhook.partitions_maintained",
        created=result.created,
        dropped=result.dropped,
        moved_from_default=result.moved_from_default,
        deleted_from_default=result.deleted_from_default,
        deleted_keys=result.deleted_keys,
    )
    return result


async def run_maintenance_loop(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock
) -> None:
    """Run maintenance now and then every hour until cancelled; a failed run is logged and
    retried at the next interval."""
    while True:
        try:
            await run_maintenance(sessionmaker, settings, clock())
        except Exception:
            log.exception("webhook.partition_maintenance_failed")
        await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)
