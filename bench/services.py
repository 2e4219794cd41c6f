"""Start the servers under test as child processes on loopback, and sample their memory."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

STARTUP_TIMEOUT_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with code {process.returncode} before it answered "
                f"{url}; see {log_path}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"{url} did not answer within {STARTUP_TIMEOUT_SECONDS:.0f} s; see {log_path}"
    )


@contextmanager
def running(
    command: list[str], env: Mapping[str, str], ready_url: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends, then stop it with SIGTERM (SIGKILL after 30 s)."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_ready(ready_url, process, log_path)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def revcov_command(port: int) -> list[str]:
    """Return the `revcov serve` command of this environment's installation."""
    script = Path(sys.executable).parent / "revcov"
    executable = str(script) if script.exists() else shutil.which("revcov")
    if executable is None:
        raise RuntimeError("the `revcov` command is not installed; run `pip install -e .` first")
    return [executable, "serve", "--host", "127.0.0.1", "--port", str(port)]


def baseline_command(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.baseline_app", "--port", str(port)]


class RssSampler:
    """Sample a process's resident memory every 100 ms and keep the maximum per phase."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._phase: str | None = None
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def phase(self, name: str | None) -> None:
        self._phase = name
        if name is not None:
            self._sample()

    def _sample(self) -> None:
        phase = self._phase
        if phase is None:
            return
        try:
            rss = self._process.memory_info().rss
        except psutil.NoSuchProcess:
            return
        self.peaks[phase] = max(self.peaks.get(phase, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()


@contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """Sample `pid` with py-spy during the block and write collapsed stacks to `output`.

    Without `output` the block runs unprofiled. py-spy writes its file when it gets SIGINT.
    """
    if output is None:
        yield
        return
    executable = Path(sys.executable).parent / "py-spy"
    command = [str(executable), "record", "--pid", str(pid), "--format", "raw"]
    command += ["--rate", "200", "--output", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
