"""A small HTTP/1.1 load generator over asyncio streams, for prepared requests on loopback.

Requests are built (and signed) before the clock starts, so the generator spends its time
on sockets only. It runs in the benchmark's own process, on the same cores as the
servers, and drives revcov and the baseline alike.
"""

import asyncio
import itertools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


def build_request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send one request and return the response status.

        A server closes keep-alive connections that stay idle (uvicorn after 5 s), so a
        connection found closed before any response byte arrived is opened again and the
        request sent once more, as HTTP clients do.
        """
        try:
            return await self._send(request)
        except (asyncio.IncompleteReadError, ConnectionResetError) as error:
            if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                raise
            self.close()
            return await self._send(request)

    async def _send(self, request: bytes) -> int:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _connect(host: str, port: int) -> _Connection:
    connection = _Connection(host, port)
    connection.reader, connection.writer = await asyncio.open_connection(host, port)
    return connection


async def closed_loop(
    host: str, port: int, requests: Sequence[bytes], concurrency: int
) -> LoadResult:
    """Send every request as fast as the server answers, `concurrency` at a time."""
    connections = [await _connect(host, port) for _ in range(concurrency)]
    pending = iter(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker(connection: _Connection) -> None:
        for request in pending:
            sent = time.perf_counter()
            status = await connection.send(request)
            latencies.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    seconds = time.perf_counter() - started
    return _result(latencies, statuses, seconds)


async def open_loop(
    host: str, port: int, requests: Sequence[bytes], rate: float, connections: int = 64
) -> LoadResult:
    """Send requests at a fixed `rate` per second, whether or not earlier ones were answered.

    Latency runs from each request's scheduled start, so a server that falls behind shows
    its queueing delay instead of hiding it.
    """
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await _connect(host, port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def send(request: bytes, scheduled: float) -> None:
        connection = await idle.get()
        status = await connection.send(request)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait(connection)

    started = time.perf_counter()
    tasks = []
    for index, request in zip(itertools.count(), requests, strict=False):
        scheduled = started + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(request, scheduled)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait().close()
    return _result(latencies, statuses, seconds)


def _result(latencies: list[float], statuses: dict[int, int], seconds: float) -> LoadResult:
    errors = sum(count for status, count in statuses.items() if not 200 <= status < 300)
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        latencies=latencies,
        statuses=statuses,
    )
