"""End-to-end ingest throughput onto a real broker, each next to a baseline from the same run.

Run: ``.venv/bin/python services/ingest_email/bench/bench_ingest.py [--messages 2000] [--log-level info]``

The service logs at ``warning`` unless ``--log-level`` says otherwise; deployments run at
``info``, which costs whatever the service logs per message on top (nothing since the
per-message "inbound email published" line moved to debug).

* webhook: SendGrid Inbound Parse posts (raw MIME in ``email``) and signed Mailgun routes
  (raw MIME in ``body-mime``) through the full service (auth, form parsing, normalization,
  publish with ``acks=all``) vs an aiohttp handler that only reads the body and answers 200;
  the forms are built before the clock starts and sent by the raw keep-alive driver of
  ``bench/httpload.py``;
* SMTP: 16 concurrent smtplib clients through the full service vs an aiosmtpd handler that
  only accepts.

The clients run in a separate process (so they do not share the service's GIL); the broker
is ``SWITCHBOARD_KAFKA_BOOTSTRAP`` when set, otherwise the embedded Tansu broker. The
message is the typical ~10 KB multipart/alternative with a small attachment from
``bench_normalize.py``; each one gets its own Message-ID. The normalization's own cost per
message (CPU time of one thread) is measured separately at the end.

Two figures per row: the wall-clock rate, and the service process's own CPU time (user +
system, ``cpu_seconds`` of ``bench/httpload.py``) per message with the messages per
CPU-second it implies, which is what "per core" means: on a shared 2-core machine the load
driver and the broker take cores from the service, so the wall-clock rate says more about
the neighbours than about the service. Every server (full service and baselines) runs in
this process, the clients and the broker in others. ``--json`` writes, per row
(``sendgrid``, ``mailgun``, ``smtp``), ``<row>_per_s`` and ``<row>_baseline_per_s`` (wall
clock), ``<row>_cpu_us`` and ``<row>_baseline_cpu_us`` (CPU microseconds per message),
``<row>_per_cpu_s`` and ``<row>_baseline_per_cpu_s``, and ``normalize_us``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import smtplib
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_normalize import typical_message  # type: ignore[import-not-found]
from httpload import cpu_seconds, drive, request  # type: ignore[import-not-found]

from switchboard.common.broker import bootstrap_or_embedded
from switchboard.common.logging import configure_logging
from switchboard.common.runtime import KAFKA, running_app
from switchboard.common.settings import KafkaSettings
from switchboard.ingest_email.app import INGEST_EMAIL, build_app
from switchboard.ingest_email.normalize import normalize_email
from switchboard.ingest_email.settings import IngestEmailSettings
from switchboard.ingest_email.smtp import LenientSMTP

SECRET = uuid.uuid4().hex  # a throwaway per-run webhook secret
MAILGUN_KEY = uuid.uuid4().hex  # and Mailgun signing key
TEMPLATE: bytes = typical_message()


def message(n: int) -> bytes:
    return TEMPLATE.replace(b"<bench-1@example.org>", f"<bench-{n}-{uuid.uuid4().hex}@example.org>".encode())


# --------------------------------------------------------------------------- clients (own process)


def _mailgun_fields(key: str) -> dict[str, str]:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature, "recipient": "support@bench.example"}


def multipart(fields: dict[str, str | bytes]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``fields`` and its content type (as providers post it)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + (value if isinstance(value, bytes) else value.encode())
        + b"\r\n"
        for name, value in fields.items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def http_client(url: str, count: int, concurrency: int, mailgun_key: str | None = None) -> float:
    """Posts ``count`` messages: SendGrid's ``email`` field, or (with a key) a signed Mailgun route.

    The forms are built before the clock starts and sent by the raw driver of
    ``bench/httpload.py``, so the client's own cost stays small beside the servers'.
    """
    target = urlsplit(url)
    assert target.port is not None
    requests = []
    for i in range(count):
        fields: dict[str, str | bytes] = (
            {"email": message(i)} if mailgun_key is None else {**_mailgun_fields(mailgun_key), "body-mime": message(i)}
        )
        body, content_type = multipart(fields)
        requests.append(request(target.port, target.path, body, {"Content-Type": content_type}))
    elapsed, load = asyncio.run(drive(target.port, requests, min(concurrency, max(count, 1))))
    if load.errors:
        raise RuntimeError(f"{load.errors} of {count} webhook posts failed")
    return float(elapsed)


def smtp_clients(port: int, count: int, clients: int) -> float:
    per_client = count // clients
    errors: list[BaseException] = []

    def client(c: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as conn:
                for i in range(per_client):
                    conn.sendmail("a@customer.example", ["support@bench.example"], message(c * per_client + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} SMTP clients failed: {errors[0]!r}")
    return elapsed


# --------------------------------------------------------------------------- baselines


class AcceptOnly:
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


@contextlib.asynccontextmanager
async def baseline_http() -> AsyncIterator[str]:
    async def read_only(request: web.Request) -> web.Response:
        # the body only, as issue #3 defines the baseline: ``request.post()`` would add aiohttp's
        # form parser, which costs ~0.1 ms of CPU per form part (its Content-Disposition
        # parser), so a 5-field Mailgun form measured half the rate of a 1-field SendGrid one
        await request.read()
        return web.json_response({"status": "accepted"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/inbound", read_only)
    async with running_app(app) as url:
        yield f"{url}/inbound"


@contextlib.asynccontextmanager
async def baseline_smtp() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: LenientSMTP(AcceptOnly(), loop=loop), "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Run:
    """One measured phase: wall-clock seconds, and the service process's own CPU seconds."""

    count: int
    elapsed: float
    cpu: float

    @property
    def per_s(self) -> float:
        return self.count / self.elapsed

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.count * 1e6

    @property
    def per_cpu_s(self) -> float:
        return self.count / self.cpu if self.cpu else float("inf")


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    baseline: Run
    full: Run


async def bench(bootstrap: str, count: int, concurrency: int, smtp_count: int, log_level: str) -> list[Row]:
    settings = IngestEmailSettings(
        kafka=KafkaSettings(bootstrap=bootstrap, partitions=3),
        topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.",
        smtp_host="127.0.0.1",
        smtp_port=0,
        recipients={"@bench.example": "bench"},
        sendgrid_secrets={"bench": SECRET},
        mailgun_signing_keys={"bench": MAILGUN_KEY},
        log_level=log_level,
    )
    app = build_app(settings)
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()

    async def measured(n: int, client: Any, *args: Any) -> Run:
        """Run ``client`` in the client process; the servers all live in this process, so its
        CPU time over the phase is the measured server's (the broker is another process)."""
        before = cpu_seconds(os.getpid())
        elapsed = await loop.run_in_executor(pool, client, *args)
        return Run(n, elapsed, cpu_seconds(os.getpid()) - before)

    with pool:
        await loop.run_in_executor(pool, time.sleep, 0)  # start the client process before any clock
        async with running_app(app) as url:
            async with asyncio.timeout(30):
                await app[KAFKA].connected.wait()
            smtp = app[INGEST_EMAIL].smtp
            assert smtp is not None
            sendgrid_url = f"{url}/inbound/sendgrid/bench/{SECRET}"
            mailgun_url = f"{url}/inbound/mailgun/bench"
            await loop.run_in_executor(pool, http_client, sendgrid_url, 50, concurrency)  # warm up
            await loop.run_in_executor(pool, http_client, mailgun_url, 50, concurrency, MAILGUN_KEY)
            full_http = await measured(count, http_client, sendgrid_url, count, concurrency)
            full_mailgun = await measured(count, http_client, mailgun_url, count, concurrency, MAILGUN_KEY)
            full_smtp = await measured(smtp_count, smtp_clients, smtp.port, smtp_count, 16)
        async with baseline_http() as base_url:
            await loop.run_in_executor(pool, http_client, base_url, 50, concurrency)  # warm up
            base_http = await measured(count, http_client, base_url, count, concurrency)
            base_mailgun = await measured(count, http_client, base_url, count, concurrency, MAILGUN_KEY)
        async with baseline_smtp() as port:
            base_smtp = await measured(smtp_count, smtp_clients, port, smtp_count, 16)
    return [
        Row("sendgrid", f"webhook (SendGrid raw MIME, {concurrency} in flight)", base_http, full_http),
        Row("mailgun", f"webhook (Mailgun signed route, {concurrency} in flight)", base_mailgun, full_mailgun),
        Row("smtp", "SMTP (16 concurrent clients)", base_smtp, full_smtp),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000, help="webhook posts")
    parser.add_argument("--smtp-messages", type=int, default=960, help="SMTP messages (split over 16 clients)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the figures here as JSON")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning"],
        help="the service's log level (deployments run at info; the log lines go to stderr)",
    )
    args = parser.parse_args()
    configure_logging(args.log_level, "json")
    with bootstrap_or_embedded() as bootstrap:
        rows = asyncio.run(bench(bootstrap, args.messages, args.concurrency, args.smtp_messages, args.log_level))
    raw = message(0)
    started, n = time.thread_time(), 500  # CPU time of this thread: the others' load does not count
    for _ in range(n):
        normalize_email(raw, tenant_id="bench", provider="bench")
    per_message = (time.thread_time() - started) / n
    print("wall clock: messages per second (load driver and broker share the cores with the service)")
    print(f"{'':<52} {'baseline':>10} {'full service':>13} {'ratio':>6}")
    for row in rows:
        base, full = row.baseline.per_s, row.full.per_s
        print(f"{row.name:<52} {base:>10.0f} {full:>13.0f} {full / base:>6.2f}")
    print("per core: the service process's CPU (user + system) per message, and messages per CPU-second")
    print(f"{'':<52} {'baseline':>16} {'full service':>16} {'ratio':>6}")
    for row in rows:
        base, full = row.baseline, row.full
        print(
            f"{row.name:<52} {base.cpu_us:>7.0f} us {base.per_cpu_s:>5.0f}/s "
            f"{full.cpu_us:>7.0f} us {full.per_cpu_s:>5.0f}/s {full.per_cpu_s / base.per_cpu_s:>6.2f}"
        )
    print(f"normalization alone: {per_message * 1e6:.0f} us per message ({1 / per_message:.0f}/s on one core)")
    if args.json:
        figures: dict[str, float] = {"normalize_us": per_message * 1e6}
        for row in rows:
            figures |= {
                f"{row.key}_per_s": row.full.per_s,
                f"{row.key}_baseline_per_s": row.baseline.per_s,
                f"{row.key}_cpu_us": row.full.cpu_us,
                f"{row.key}_baseline_cpu_us": row.baseline.cpu_us,
                f"{row.key}_per_cpu_s": row.full.per_cpu_s,
                f"{row.key}_baseline_per_cpu_s": row.baseline.per_cpu_s,
            }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out)


if __name__ == "__main__":
    main()
