"""A raw asyncio HTTP/1.1 load driver for the benchmarks: pre-built requests, keep-alive, little CPU.

The ingest benchmarks measure a server against a bare handler; an ordinary HTTP client
(aiohttp building each request, a form encoder per post) costs about as much CPU as the
servers it drives and caps both figures at its own speed. This driver writes requests
built before the clock starts, one at a time per connection, and reads just enough of each
response (status line, ``Content-Length``) to send the next one.

    requests = [build(i) for i in range(n)]          # complete requests, bytes
    elapsed, load = asyncio.run(drive(port, requests, connections=64))

Used by ``services/ingest_social/bench/bench_webhooks.py`` and
``services/ingest_email/bench/bench_ingest.py`` (which put this directory on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Load", "cpu_seconds", "drive", "request"]

_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def request(port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """One complete ``POST`` request with ``body``, ready to write on a keep-alive connection."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass
class Load:
    """The requests to send, shared by every connection, and what came back."""

    requests: Sequence[bytes]
    next_index: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    """Responses other than 200, and requests never answered."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending one request at a time until the load is used up."""

    def __init__(self, load: Load, done: asyncio.Future[None]) -> None:
        self._load = load
        self._done = done
        self._buf = bytearray()
        self._started = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send_next()

    def _send_next(self) -> None:
        assert self._transport is not None
        load = self._load
        if load.next_index >= len(load.requests):
            self._transport.close()
            return
        request = load.requests[load.next_index]
        load.next_index += 1
        self._started = time.perf_counter()
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        match = _CONTENT_LENGTH.search(self._buf, 0, end + 2)
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(self._buf) < total:
            return
        if self._buf[9:12] != b"200":
            self._load.errors += 1
        del self._buf[:total]
        self._load.latencies.append(time.perf_counter() - self._started)
        self._send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def drive(port: int, requests: Sequence[bytes], connections: int) -> tuple[float, Load]:
    """Send every request over ``connections`` keep-alive connections; (seconds, what came back)."""
    loop = asyncio.get_running_loop()
    load = Load(requests)
    started = time.perf_counter()
    waits = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda d=done: _Connection(load, d), "127.0.0.1", port)  # type: ignore[misc]
        waits.append(done)
    await asyncio.gather(*waits)
    elapsed = time.perf_counter() - started
    if len(load.latencies) != len(requests):
        load.errors += len(requests) - len(load.latencies)
    return elapsed, load


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process, this one by default (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
