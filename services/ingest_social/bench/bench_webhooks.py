"""Benchmark: signed, validated webhook requests per second vs a bare aiohttp handler.

Runs each server in its own process (one core each), drives it from this process with
``--connections`` concurrent keep-alive connections, and prints requests/s and latency
percentiles for both, measured in the same run. The webhook server verifies the
``X-Hub-Signature-256`` of a WhatsApp text message, parses and normalizes it, and publishes
it: to a real broker with ``--bootstrap host:port`` (acknowledged, ``inbound.v1`` of a
fresh prefix), otherwise to an in-memory publisher (host overhead only).

    python services/ingest_social/bench/bench_webhooks.py --requests 20000 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import multiprocessing
import socket
import statistics
import time
import uuid
from collections.abc import Sequence

import aiohttp
import orjson
from aiohttp import web

SECRET = b"bench-secret"


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


def serve(kind: str, port: int, bootstrap: str | None, ready: multiprocessing.synchronize.Event) -> None:
    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        if kind == "bare":
            app = web.Application()
            app.router.add_post("/v1/whatsapp/acme", bare)
            producer = None
        else:
            from prometheus_client import CollectorRegistry

            from switchboard.ingest_social.adapters import WhatsAppAdapter
            from switchboard.ingest_social.sdk import (
                AdapterMetrics,
                AdapterServices,
                Publisher,
                TenantConfig,
                build_webhook_app,
            )
            from switchboard.ingest_social.sdk.testing import RecordingPublisher

            publisher: Publisher
            producer = None
            if bootstrap:
                from switchboard.common.kafka.producer import RecordProducer
                from switchboard.common.settings import KafkaSettings
                from switchboard.common.topics import Topics, ensure_topics
                from switchboard.ingest_social.kafka_publisher import KafkaPublisher

                settings = KafkaSettings(bootstrap=bootstrap, partitions=1)
                topics = Topics(f"bench-{uuid.uuid4().hex[:8]}.")
                await ensure_topics(settings, topics)
                producer = RecordProducer(settings)
                await producer.start()
                publisher = KafkaPublisher(producer, topics.inbound)
            else:
                publisher = RecordingPublisher()
            services = AdapterServices(publisher=publisher, metrics=AdapterMetrics(CollectorRegistry()))
            tenants = {"whatsapp": {"acme": TenantConfig(secrets={"app_secret": SECRET.decode(), "verify_token": "v"})}}
            app = build_webhook_app([WhatsAppAdapter()], tenants, services)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            if producer is not None:
                await producer.stop()

    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


async def drive(port: int, bodies: Sequence[tuple[bytes, str]], connections: int) -> tuple[float, list[float], int]:
    url = f"http://127.0.0.1:{port}/v1/whatsapp/acme"
    latencies: list[float] = []
    errors = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < len(bodies):
                body, sig = bodies[next_index]
                next_index += 1
                started = time.perf_counter()
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sig}
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


def run(kind: str, args: argparse.Namespace, bodies: Sequence[tuple[bytes, str]]) -> float:
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(kind, port, args.bootstrap, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise SystemExit(f"{kind} server did not start")
        asyncio.run(drive(port, bodies[: min(2000, len(bodies))], args.connections))  # warm-up
        elapsed, latencies, errors = asyncio.run(drive(port, bodies, args.connections))
    finally:
        proc.terminate()
        proc.join(10)
    rps = len(bodies) / elapsed
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{kind:8s} {rps:9.0f} req/s  p50 {q[49] * 1000:6.2f} ms  p99 {q[98] * 1000:6.2f} ms  "
        f"errors {errors}  ({len(bodies)} requests, {args.connections} connections)"
    )
    return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap; omitted: in-memory publisher")
    args = parser.parse_args()
    bodies = []
    for i in range(args.requests):
        body = body_for(i)
        bodies.append((body, "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()))
    bare = run("bare", args, bodies)
    # fresh message ids for the webhook run, so none is dropped as a duplicate of the warm-up
    bodies = [
        (b, "sha256=" + hmac.new(SECRET, b, hashlib.sha256).hexdigest())
        for b in (body_for(args.requests + i) for i in range(args.requests))
    ]
    webhook = run("webhook", args, bodies)
    print(f"webhook / bare = {webhook / bare:.2f}")


if __name__ == "__main__":
    main()
