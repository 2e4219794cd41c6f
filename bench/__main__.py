"""`python -m bench run --size smoke|small|full`: generate data, load revcov, print ratios."""

import asyncio
import platform
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
import typer
from rich.console import Console

from app.db.embedded import start_embedded_postgres
from bench import generate, scenarios, services
from bench.report import Figure, at_least, at_most, print_figures, write_json
from bench.sizes import SIZES, Size, SizeName

cli = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
# Wide enough for the figures table when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 130)

BENCH_DATABASE = "revcov_bench"
MEBIBYTE = 1024 * 1024
# A small tenant's reports take milliseconds, so they are always warmed up and repeated
# often enough for a stable median, whatever the size.
SMALL_TENANT_REPEATS = 7


@cli.callback()
def main() -> None:
    """Benchmark revcov against minimal baselines measured in the same run."""


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _recreate_database(admin_dsn: str, name: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _durability(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            name: await connection.fetchval(f"SHOW {name}")
            for name in ("fsync", "synchronous_commit", "server_version")
        }
    finally:
        await connection.close()


def _create_endpoint(base_url: str, api_key: str, secret: str) -> str:
    response = httpx.post(
        f"{base_url}/v1/webhook-endpoints",
        json={"source": "typeform", "secret": secret},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def _cpu_model() -> str:
    """Return the processor's model name from /proc/cpuinfo, or the architecture elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.machine()


def _step(message: str) -> None:
    console.log(message)


async def _load(
    dsn: str,
    url: str,
    name: str,
    accounts: int,
    per_account: float,
    seed: int,
    quarters: list[generate.Quarter],
) -> generate.GeneratedTenant:
    started = time.perf_counter()
    tenant = await generate.load_tenant(
        dsn,
        url,
        name,
        accounts=accounts,
        responses_per_account=per_account,
        seed=seed,
        quarters=quarters,
    )
    _step(
        f"loaded tenant {name}: {tenant.accounts:,} accounts, {tenant.revenue_records:,} revenue "
        f"records, {tenant.responses:,} responses in {time.perf_counter() - started:.1f} s"
    )
    return tenant


def _run(
    size: Size,
    dsn: str,
    url: str,
    seed: int,
    work_dir: Path,
    output: Path | None,
    profile_dir: Path | None,
) -> bool:
    quarters = generate.recent_quarters(datetime.now(UTC))
    revcov_port, baseline_port = services.free_port(), services.free_port()
    base_url = f"http://127.0.0.1:{revcov_port}"
    secret = secrets.token_urlsafe(32)
    revcov_env = {
        "REVCOV_DATABASE_URL": url,
        "REVCOV_ENVIRONMENT": "production",
        "REVCOV_LOG_FORMAT": "json",
        # Large reports may take longer than the 30 s default while they are slow.
        "REVCOV_DB_STATEMENT_TIMEOUT_MS": "900000",
        # The endpoint's rate limit (200 deliveries per second after a burst of 5,000)
        # would reject part of the ingest runs with 429. The benchmark measures what the
        # service can store, and the baseline has no limit either.
        "REVCOV_WEBHOOK_RATE_LIMIT_PER_SECOND": "0",
    }
    baseline_env = {"REVCOV_BENCH_BASELINE_DSN": dsn, "REVCOV_BENCH_BASELINE_SECRET": secret}

    with (
        services.running(
            services.revcov_command(revcov_port),
            revcov_env,
            f"{base_url}/healthz",
            work_dir / "revcov.log",
        ) as revcov,
        services.running(
            services.baseline_command(baseline_port),
            baseline_env,
            f"http://127.0.0.1:{baseline_port}/healthz",
            work_dir / "baseline.log",
        ),
        services.RssSampler(revcov.pid) as rss,
    ):
        _step(f"revcov serve on {base_url} (pid {revcov.pid}), baseline on port {baseline_port}")
        small = [
            asyncio.run(
                _load(dsn, url, f"small-{index:03d}", size.small_tenant_accounts, 5, seed, quarters)
            )
            for index in range(size.small_tenants)
        ]
        ingest_tenant = asyncio.run(
            _load(dsn, url, "ingest", size.ingest_accounts, 0, seed, quarters)
        )
        bulk_api_id, bulk_api_key = asyncio.run(generate.create_tenant(url, "bulk-api"))
        bulk_copy_id, _ = asyncio.run(generate.create_tenant(url, "bulk-copy"))
        asyncio.run(generate.analyze(dsn))

        rss.phase("reports")
        small_alone = asyncio.run(
            scenarios.reports(
                base_url,
                dsn,
                small[0].tenant_id,
                small[0].api_key,
                quarters,
                SMALL_TENANT_REPEATS,
                True,
            )
        )
        rss.phase(None)
        _step("measured the small tenant's reports alone")

        growth = asyncio.run(
            _load(
                dsn, url, "growth", size.growth_accounts, size.responses_per_account, seed, quarters
            )
        )
        large = asyncio.run(
            _load(
                dsn, url, "large", size.large_accounts, size.responses_per_account, seed, quarters
            )
        )
        asyncio.run(generate.analyze(dsn))
        _step("analyzed the database")

        rss.phase("ingest")
        endpoint_id = _create_endpoint(base_url, ingest_tenant.api_key, secret)
        with services.profiled(revcov.pid, profile_dir and profile_dir / "ingest.txt"):
            ingest = asyncio.run(
                scenarios.ingest(
                    seed=seed,
                    requests=size.ingest_requests,
                    half_rate_seconds=size.ingest_half_rate_seconds,
                    revcov_port=revcov_port,
                    revcov_path=f"/v1/webhooks/{endpoint_id}",
                    baseline_port=baseline_port,
                    secret=secret,
                    account_refs=[f"acct-{index:07d}" for index in range(size.ingest_accounts)],
                    quarter=quarters[-1],
                )
            )
        _step("measured webhook ingest")

        rss.phase("bulk")
        updates = scenarios.bulk_rows(seed, size.bulk_rows, quarters)
        with services.profiled(revcov.pid, profile_dir and profile_dir / "bulk.txt"):
            api_seconds = asyncio.run(scenarios.bulk_via_api(base_url, bulk_api_key, updates))
        copy_seconds = asyncio.run(scenarios.bulk_via_copy(dsn, bulk_copy_id, updates))
        _step("measured bulk revenue updates")

        rss.phase("reports")
        with services.profiled(revcov.pid, profile_dir and profile_dir / "reports.txt"):
            large_times = asyncio.run(
                scenarios.reports(
                    base_url,
                    dsn,
                    large.tenant_id,
                    large.api_key,
                    quarters,
                    size.report_repeats,
                    size.report_warmup,
                )
            )
        growth_times = asyncio.run(
            scenarios.reports(
                base_url,
                dsn,
                growth.tenant_id,
                growth.api_key,
                quarters,
                size.report_repeats,
                size.report_warmup,
            )
        )
        small_shared = asyncio.run(
            scenarios.reports(
                base_url,
                dsn,
                small[0].tenant_id,
                small[0].api_key,
                quarters,
                SMALL_TENANT_REPEATS,
                True,
            )
        )
        rss.phase(None)
        _step("measured reports")
        durability = asyncio.run(_durability(dsn))

    figures = _figures(
        size,
        ingest,
        len(updates),
        api_seconds,
        copy_seconds,
        large_times,
        growth_times,
        small_alone,
        small_shared,
        rss.peaks,
    )
    context: dict[str, object] = {
        "size": size.name.value,
        "seed": seed,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_model()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 1024**3:.0f} GiB, {platform.system()}",
        "postgresql": durability,
        "large_tenant": {"accounts": large.accounts, "responses": large.responses},
    }
    console.print(
        f"size {size.name.value}, seed {seed}; PostgreSQL {durability['server_version']} with "
        f"fsync={durability['fsync']}, synchronous_commit={durability['synchronous_commit']}; "
        f"large tenant {large.accounts:,} accounts and {large.responses:,} responses"
    )
    print_figures(console, "revcov against its baselines (same run)", figures)
    if output is not None:
        write_json(output, context, figures)
    return all(figure.met for figure in figures)


def _figures(
    size: Size,
    ingest: scenarios.IngestFigures,
    rows: int,
    api_seconds: float,
    copy_seconds: float,
    large: dict[str, float],
    growth: dict[str, float],
    small_alone: dict[str, float],
    small_shared: dict[str, float],
    rss_peaks: dict[str, int],
) -> list[Figure]:
    figures = [
        at_least(
            "ingest throughput / baseline",
            ingest.revcov_max.throughput / ingest.baseline_max.throughput,
            0.7,
            f"{ingest.revcov_max.throughput:.0f} vs {ingest.baseline_max.throughput:.0f} req/s",
        ),
        at_most(
            "ingest p99 at half max rate (ms)",
            ingest.revcov_half.percentile(0.99) * 1000,
            100,
            f"at {ingest.revcov_half.throughput:.0f} req/s; baseline "
            f"{ingest.baseline_half.percentile(0.99) * 1000:.1f} ms",
        ),
        at_most(
            "ingest errors",
            sum(result.errors for result in (ingest.revcov_max, ingest.revcov_half)),
            0,
            f"statuses {ingest.revcov_max.statuses} and {ingest.revcov_half.statuses}",
        ),
        at_least(
            "bulk row rate / COPY+merge",
            copy_seconds / api_seconds,
            0.5,
            f"{rows / api_seconds:,.0f} vs {rows / copy_seconds:,.0f} rows/s",
        ),
    ]
    for name, seconds in large.items():
        if name == "sum":
            continue
        bound = 3 if name == "coverage" else 5
        figures.append(
            at_most(
                f"{name} / revenue sum",
                seconds / large["sum"],
                bound,
                f"{seconds * 1000:.1f} vs {large['sum'] * 1000:.1f} ms",
            )
        )
    for name, seconds in large.items():
        if name == "sum":
            continue
        figures.append(
            at_most(
                f"{name} growth {size.growth_accounts:,} -> {size.large_accounts:,}",
                seconds / growth[name],
                10,
                f"{growth[name] * 1000:.1f} -> {seconds * 1000:.1f} ms",
            )
        )
    for name, seconds in small_shared.items():
        if name == "sum":
            continue
        figures.append(
            at_most(
                f"{name} small tenant shared / alone",
                seconds / small_alone[name],
                1.2,
                f"{small_alone[name] * 1000:.1f} -> {seconds * 1000:.1f} ms",
            )
        )
    for phase, peak in sorted(rss_peaks.items()):
        figures.append(at_most(f"service RSS during {phase} (MB)", peak / MEBIBYTE, 300, "peak"))
    return figures


@cli.command()
def run(
    size: Annotated[
        SizeName, typer.Option(help="How much data and load to generate.")
    ] = SizeName.SMOKE,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="REVCOV_BENCH_DATABASE_URL",
            help="PostgreSQL server URL (postgresql://user@host:port/db); the benchmark "
            f"drops and recreates database {BENCH_DATABASE} on it. Default: an embedded "
            "server in a temporary directory.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data generator.")] = 20261205,
    output: Annotated[
        Path | None, typer.Option(help="Also write the figures as JSON here.")
    ] = None,
    profile_dir: Annotated[
        Path | None,
        typer.Option(
            help="Sample the service with py-spy during ingest, bulk and large-tenant reports, "
            "and write collapsed stacks into this directory."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Exit with code 1 when a figure misses its target.")
    ] = False,
) -> None:
    """Generate data, measure revcov and its baselines, and print every figure as a ratio."""
    chosen = SIZES[size]
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    # The server logs stay after the run, for a look at any error.
    work_dir = Path(tempfile.mkdtemp(prefix="revcov-bench-"))
    console.log(f"server logs go to {work_dir}")
    with tempfile.TemporaryDirectory(prefix="revcov-bench-db-") as database_dir:
        if database_url is None:
            embedded = start_embedded_postgres(Path(database_dir), delete_on_stop=True)
            try:
                met = _run(
                    chosen, embedded.dsn(), embedded.url(), seed, work_dir, output, profile_dir
                )
            finally:
                embedded.stop()
        else:
            asyncio.run(_recreate_database(database_url, BENCH_DATABASE))
            dsn = _with_database(database_url, BENCH_DATABASE)
            url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
            met = _run(chosen, dsn, url, seed, work_dir, output, profile_dir)
    if check and not met:
        raise typer.Exit(1)


if __name__ == "__main__":
    cli()
