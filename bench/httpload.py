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

``bench/bench_e2e.py`` uses the open-loop pieces: :class:`Sender` posts each request when it
is due (a connection per request in flight, reused once answered) and :func:`serve` is a
keep-alive HTTP/1.1 endpoint that hands each request body to a callback and answers 200.
On the two-core development machine every microsecond the load generator spends is taken
from the services it measures; these cost a fraction of aiohttp's client and server.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Load", "Sender", "cpu_seconds", "drive", "request", "serve"]

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
        _, total = _message_end(self._buf)
        if not total:
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


def _message_end(buf: bytearray) -> tuple[int, int]:
    """Where the head and the whole of the HTTP message (request or response) at the start of
    ``buf`` end, by its ``Content-Length``; ``(0, 0)`` while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0, 0
    match = _CONTENT_LENGTH.search(buf, 0, end + 2)
    total = end + 4 + (int(match.group(1)) if match else 0)
    return (end + 4, total) if len(buf) >= total else (0, 0)


class _Client(asyncio.Protocol):
    """One keep-alive connection of a :class:`Sender`: one request at a time."""

    def __init__(self, idle: list[_Client]) -> None:
        self._idle = idle
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        _, total = _message_end(self._buf)
        if not total:
            return
        status = int(self._buf[9:12])
        del self._buf[:total]
        answer, self.answer = self.answer, None
        self._idle.append(self)
        if answer is not None and not answer.done():
            answer.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self in self._idle:
            self._idle.remove(self)
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("connection closed before the answer"))


class Sender:
    """Open-loop ``POST`` requests to ``127.0.0.1:port``: :meth:`send` writes a request as soon
    as it is called, on an idle keep-alive connection or a new one, and returns the status."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._idle: list[_Client] = []
        self._all: list[_Client] = []

    async def send(self, request: bytes) -> int:
        loop = asyncio.get_running_loop()
        client = self._idle.pop() if self._idle else None
        if client is None or client.transport is None:
            _, client = await loop.create_connection(lambda: _Client(self._idle), "127.0.0.1", self._port)
            self._all.append(client)
        answer: asyncio.Future[int] = loop.create_future()
        client.answer = answer
        assert client.transport is not None
        client.transport.write(request)
        return await answer

    def close(self) -> None:
        for client in self._all:
            if client.transport is not None:
                client.transport.close()


_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class _Endpoint(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server connection: each request's body to ``on_body``, then 200."""

    def __init__(self, on_body: Callable[[bytes], None]) -> None:
        self._on_body = on_body
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            head_end, total = _message_end(self._buf)
            if not total:
                return
            body = bytes(self._buf[head_end:total])
            del self._buf[:total]
            self._on_body(body)
            assert self._transport is not None
            self._transport.write(_OK)


async def serve(port: int, on_body: Callable[[bytes], None]) -> asyncio.Server:
    """Listen on ``127.0.0.1:port``; every request's body goes to ``on_body`` and gets a 200
    (requests with a ``Content-Length``, as aiohttp's client sends a bytes body)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Endpoint(on_body), "127.0.0.1", port)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process, this one by default (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
