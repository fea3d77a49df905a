"""Benchmark: signed, validated webhook requests per second vs a bare aiohttp handler.

Runs each server in its own process and drives it from this process with ``--connections``
concurrent keep-alive connections (a raw asyncio HTTP/1.1 client, ``bench/httpload.py``, so
the client costs far less than the servers it measures). Prints requests/s and latency percentiles for both,
measured in the same run, and their ratio.

* ``bare``: an aiohttp handler that only reads the body and answers 200.
* ``webhook``: the full path of the service: ``X-Hub-Signature-256`` check of a WhatsApp
  text message, parse, normalization into ``InboundMessage``, dedupe, publish to
  ``inbound.v1`` of a fresh prefix on a real broker, and a 200 only once the broker
  acknowledged the request's record.

The webhook server is set up as the service sets itself up: its producer counts into
Prometheus metrics, and once started it freezes the startup heap and raises the first GC
generation's threshold (``--gc-threshold``, the service's
``SWITCHBOARD_GC_GEN0_THRESHOLD``; 0 keeps Python's default).

The broker is the one of ``--bootstrap host:port``, else an embedded broker started for
the run; ``--in-memory`` publishes to an in-memory publisher instead (host overhead only).
``--profile FILE`` writes a cProfile of the webhook server (read it with ``pstats``).

    python services/ingest_social/bench/bench_webhooks.py --requests 20000 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from httpload import cpu_seconds, drive, request  # type: ignore[import-not-found]

from switchboard.common.gc_tuning import DEFAULT_GEN0_THRESHOLD

SECRET = b"bench-secret"
PATH = "/v1/whatsapp/acme"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body_for(i: int) -> bytes:
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1"},
                                "contacts": [{"profile": {"name": "Bench"}, "wa_id": "16315551234"}],
                                "messages": [
                                    {
                                        "from": "16315551234",
                                        "id": f"wamid.bench.{i}",
                                        "timestamp": "1772452800",
                                        "type": "text",
                                        "text": {"body": "hello from the benchmark"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    )


def signed_requests(port: int, first: int, count: int) -> list[bytes]:
    """``count`` complete HTTP/1.1 requests with distinct message ids, ready to write."""
    out = []
    for i in range(first, first + count):
        body = body_for(i)
        sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        out.append(request(port, PATH, body, {"Content-Type": "application/json", "X-Hub-Signature-256": sig}))
    return out


# ---------------------------------------------------------------------------------- servers


def serve(
    kind: str, port: int, bootstrap: str | None, profile: str | None, ready: MpEvent, gc_threshold: int = 0
) -> None:
    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            if kind == "bare":
                app = web.Application()
                app.router.add_post(PATH, bare)
            else:
                app = await stack.enter_async_context(webhook_app(bootstrap, gc_threshold))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
            ready.set()
            await stop.wait()

    if profile:
        import cProfile

        with cProfile.Profile() as prof:
            asyncio.run(main())
        prof.dump_stats(profile)
    else:
        asyncio.run(main())


@contextlib.asynccontextmanager
async def webhook_app(bootstrap: str | None, gc_threshold: int) -> AsyncIterator[web.Application]:
    from prometheus_client import CollectorRegistry

    from switchboard.common.gc_tuning import tune_gc
    from switchboard.ingest_social.adapters import WhatsAppAdapter
    from switchboard.ingest_social.sdk import (
        AdapterMetrics,
        AdapterServices,
        Publisher,
        TenantConfig,
        build_webhook_app,
    )
    from switchboard.ingest_social.sdk.testing import RecordingPublisher

    async with contextlib.AsyncExitStack() as stack:
        publisher: Publisher
        if bootstrap:
            from switchboard.common.kafka.producer import RecordProducer
            from switchboard.common.metrics import KafkaMetrics
            from switchboard.common.settings import KafkaSettings
            from switchboard.common.topics import Topics, ensure_topics
            from switchboard.ingest_social.kafka_publisher import KafkaPublisher

            settings = KafkaSettings(bootstrap=bootstrap, partitions=1)
            topics = Topics(f"bench-{uuid.uuid4().hex[:8]}.")
            await ensure_topics(settings, topics)
            # with the metrics the service gives its producer, so their cost is measured too
            producer = await stack.enter_async_context(
                RecordProducer(settings, metrics=KafkaMetrics(CollectorRegistry()))
            )
            publisher = KafkaPublisher(producer, topics.inbound)
        else:
            publisher = RecordingPublisher()
        services = AdapterServices(publisher=publisher, metrics=AdapterMetrics(CollectorRegistry()))
        tenants = {"whatsapp": {"acme": TenantConfig(secrets={"app_secret": SECRET.decode(), "verify_token": "v"})}}
        app = build_webhook_app([WhatsAppAdapter()], tenants, services)
        tune_gc(app, gc_threshold)  # as the service does
        yield app


# ---------------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float
    """Server process CPU time (user + system) per request."""


def run(kind: str, args: argparse.Namespace, bootstrap: str | None, profile: str | None) -> Figures:
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(kind, port, bootstrap, profile, ready, args.gc_threshold), daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise SystemExit(f"{kind} server did not start")
        warmup = signed_requests(port, 10_000_000, min(2000, args.requests))
        asyncio.run(drive(port, warmup, args.connections))
        requests = signed_requests(port, 0, args.requests)
        cpu_before = cpu_seconds(proc.pid)
        elapsed, load = asyncio.run(drive(port, requests, args.connections))
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.terminate()
        proc.join(30)
    q = statistics.quantiles(load.latencies, n=100)
    figures = Figures(args.requests / elapsed, q[49] * 1000, q[98] * 1000, load.errors, cpu / args.requests * 1e6)
    print(
        f"{kind:8s} {figures.rps:9.0f} req/s  p50 {figures.p50_ms:6.2f} ms  p99 {figures.p99_ms:6.2f} ms  "
        f"server CPU {figures.cpu_us:5.0f} us/req  errors {figures.errors}  "
        f"({args.requests} requests, {args.connections} connections)",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="bare/webhook pairs to run, alternating")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP"),
        help="an existing broker; default: SWITCHBOARD_KAFKA_BOOTSTRAP, else an embedded one",
    )
    parser.add_argument("--in-memory", action="store_true", help="publish to memory instead of a broker")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=DEFAULT_GEN0_THRESHOLD,
        help="the webhook server's first-generation GC threshold after startup, as the service's setting; "
        "0 keeps Python's default",
    )
    parser.add_argument("--profile", default=None, help="write a cProfile of the webhook server here")
    parser.add_argument("--json", default=None, help="also write the medians of the rounds here as JSON")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap
        if not bootstrap and not args.in_memory:
            from switchboard.common.broker import EmbeddedBroker

            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
        print(f"publisher: {'in-memory' if args.in_memory else f'broker at {bootstrap}'}", flush=True)
        ratios = []
        rounds: dict[str, list[Figures]] = {"bare": [], "webhook": []}
        for _ in range(args.rounds):
            bare = run("bare", args, None, None)
            webhook = run("webhook", args, None if args.in_memory else bootstrap, args.profile)
            rounds["bare"].append(bare)
            rounds["webhook"].append(webhook)
            ratios.append(webhook.rps / bare.rps)
            print(f"webhook / bare = {ratios[-1]:.2f}", flush=True)
        if len(ratios) > 1:
            print(f"median webhook / bare over {len(ratios)} rounds = {statistics.median(ratios):.2f}")
    if args.json:
        medians = {
            f"{kind}_{name}": statistics.median(getattr(f, name) for f in figures)
            for kind, figures in rounds.items()
            for name in ("rps", "p50_ms", "p99_ms", "cpu_us")
        }
        medians |= {"ratio": statistics.median(ratios), "errors": sum(f.errors for fs in rounds.values() for f in fs)}
        medians |= {"requests": args.requests, "connections": args.connections, "rounds": args.rounds}
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(medians, out)


if __name__ == "__main__":
    main()
