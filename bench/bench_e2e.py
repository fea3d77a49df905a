"""End-to-end latency, ingest acknowledgement to delivery, at a steady rate, all four services as processes.

Run: ``.venv/bin/python bench/bench_e2e.py [--rate 500] [--seconds 20] [--json FILE]``

The broker is ``SWITCHBOARD_KAFKA_BOOTSTRAP`` when set, otherwise an embedded Tansu broker
started for the run. The four services run as real processes (``python -m
switchboard.<service>``) on free loopback ports with topics under a fresh prefix. This
process plays both ends:

- customers: signed WhatsApp Cloud API webhooks posted to ingest_social at a steady
  ``--rate`` (open loop: each message is sent on its schedule whether or not earlier ones
  were answered); ``--per-contact`` messages per customer (the first opens a conversation,
  the rest are follow-ups). The acknowledgement time is when the 200 arrives here.
- the agents' helpdesk: an HTTP receiver the notifier posts its webhooks to; it
  timestamps each arrival and matches it to its message by the message's text, which the
  router puts in the dispatch's preview. Agents are created through the router API with
  enough capacity that nothing waits in a queue.

Both ends of the measured stream are the raw keep-alive HTTP pieces of ``httpload.py``
(``Sender``, ``serve``): this process shares the two cores with the services it measures,
and with aiohttp's client and server it used about 700 us of CPU per message, more than
any service. The CPU it used is printed with the figures.

The baseline, measured in the same run on the same broker before the services get any
traffic, is one broker hop at the same rate: a record written with ``acks=all`` and read
by a consumer in this process (latency from the acknowledgement to the read). The
pipeline makes two such hops (inbound to the router, dispatch to the notifier) plus HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from httpload import Sender, request, serve  # type: ignore[import-not-found]

from switchboard.common.broker import bootstrap_or_embedded, free_port
from switchboard.common.testing import consume_all
from switchboard.common.testing.processes import ServiceProcess

SERVICES = ("ingest_email", "ingest_social", "router", "notifier")
TENANT = "acme"
APP_SECRET = "bench-only-whatsapp-app-secret"  # noqa: S105  # a throwaway secret of the bench stack
WEBHOOK_SECRET = "whsec_" + "YmVuY2gtb25seS1ub3RpZmllci1zaWduaW5nLWtleQ=="
RULES = """\
tenants:
  acme:
    default_queue: general
    queues:
      - id: general
        match: {channels: [whatsapp]}
        strategy: least_loaded
"""


# ---------------------------------------------------------------------------- processes


def services(bootstrap: str, prefix: str, workdir: Path, receiver_port: int) -> dict[str, ServiceProcess]:
    rules = workdir / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    channels = workdir / "channels.yaml"
    tenants = {TENANT: {"secrets": {"app_secret": APP_SECRET, "verify_token": "bench"}}}
    channels.write_text(json.dumps({"adapters": {"whatsapp": {"tenants": tenants}}}), encoding="utf-8")
    ports = {name: free_port() for name in SERVICES}
    group = prefix.rstrip(".")
    router_url = f"http://127.0.0.1:{ports['router']}"
    common = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")},
        "SWITCHBOARD_KAFKA_BOOTSTRAP": bootstrap,
        "SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS": "10",
        "SWITCHBOARD_KAFKA_PARTITIONS": "3",
        "SWITCHBOARD_TOPIC_PREFIX": prefix,
        "SWITCHBOARD_HTTP_HOST": "127.0.0.1",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_LOG_FORMAT": "json",
    }
    specific = {
        "ingest_email": {
            "SWITCHBOARD_SMTP_HOST": "127.0.0.1",
            "SWITCHBOARD_SMTP_PORT": str(free_port()),
            "SWITCHBOARD_RECIPIENTS": json.dumps({"@acme.bench.test": TENANT}),
        },
        "ingest_social": {
            "SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE": str(channels),
            "SWITCHBOARD_INGEST_SOCIAL_DISCOVER_PLUGINS": "false",
        },
        "router": {
            "SWITCHBOARD_RULES_FILE": str(rules),
            "SWITCHBOARD_CONSUMER_GROUP": f"router-{group}",
            "SWITCHBOARD_ADVERTISED_URL": router_url,
        },
        "notifier": {
            "SWITCHBOARD_CONSUMER_GROUP": f"notifier-{group}",
            "SWITCHBOARD_EMAIL_SENDER": "switchboard@bench.test",
            "SWITCHBOARD_WEBHOOK_SECRETS": json.dumps([WEBHOOK_SECRET]),
            "SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
            "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true",
            "SWITCHBOARD_INBOX_ENABLED": "false",
            "SWITCHBOARD_ROUTER_URL": router_url,
            "BENCH_RECEIVER_PORT": str(receiver_port),
        },
    }
    return {
        name: ServiceProcess(
            name,
            {**common, "SWITCHBOARD_HTTP_PORT": str(ports[name]), **specific[name]},
            ports[name],
            workdir / f"{name}.log",
        )
        for name in SERVICES
    }


async def wait_ready(http: aiohttp.ClientSession, stack: dict[str, ServiceProcess], timeout: float = 90) -> None:
    pending = list(stack.values())
    deadline = time.monotonic() + timeout
    while pending:
        for service in list(pending):
            if service.process is None or service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited; see {service.log_path}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(f"{service.url}/readyz") as answer:
                    if answer.status == 200:
                        pending.remove(service)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {timeout:g} s: {[s.name for s in pending]}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------- the two ends


def text_of(n: int) -> str:
    return f"bench message {n}: where is my order?"


def index_of(text: str) -> int | None:
    if not text.startswith("bench message "):
        return None
    number = text.removeprefix("bench message ").partition(":")[0]
    return int(number) if number.isdigit() else None


def whatsapp_body(n: int, contact: int) -> bytes:
    wa_id = f"1555{contact:07d}"
    message = {
        "from": wa_id,
        "id": f"wamid.bench.{n}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text_of(n)},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100000", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": f"Customer {contact}"}, "wa_id": wa_id}],
        "messages": [message],
    }
    change = {"field": "messages", "value": value}
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    return orjson.dumps(payload)


@dataclass
class Timings:
    acked: dict[int, float] = field(default_factory=dict)
    delivered: dict[int, float] = field(default_factory=dict)
    failed: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    """Why posts failed: the HTTP status, or the client error's type."""
    unmatched: int = 0
    client_cpu_s: float = 0.0
    """CPU seconds this process (customers and helpdesk) spent on the measured stream."""


@contextlib.asynccontextmanager
async def receiver(port: int, timings: Timings) -> AsyncIterator[None]:
    """The agents' helpdesk: timestamps each delivery (the first of each message) and answers 200."""

    def hook(body: bytes) -> None:
        arrived = time.time()
        try:
            payload: dict[str, Any] = orjson.loads(body)
        except orjson.JSONDecodeError:
            timings.unmatched += 1
            return
        n = index_of(str(payload.get("data", {}).get("conversation", {}).get("preview", "")))
        if n is None:
            timings.unmatched += 1
        else:
            timings.delivered.setdefault(n, arrived)

    server = await serve(port, hook)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def post(sender: Sender, port: int, n: int, contact: int, timings: Timings) -> None:
    body = whatsapp_body(n, contact)
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
    try:
        async with asyncio.timeout(30):
            status = await sender.send(request(port, f"/v1/whatsapp/{TENANT}", body, headers))
    except (OSError, TimeoutError) as exc:
        timings.failed += 1
        timings.answers[type(exc).__name__] += 1
        return
    if status == 200:
        timings.acked[n] = time.time()
    else:
        timings.failed += 1
        timings.answers[str(status)] += 1


async def steady(
    sender: Sender, port: int, first: int, count: int, rate: float, per_contact: int, timings: Timings
) -> float:
    """Send ``count`` messages at ``rate`` per second on schedule; returns the achieved send rate."""
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        n = first + i
        task = asyncio.create_task(post(sender, port, n, n // per_contact, timings))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return count / (time.perf_counter() - started)


async def until_delivered(timings: Timings, wanted: range, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(n in timings.delivered for n in wanted if n in timings.acked):
            return
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------- baseline: one broker hop


async def broker_hop(bootstrap: str, prefix: str, count: int, rate: float) -> list[float]:
    """Latency of one hop (acknowledged write to read) at ``rate``, on the same broker."""
    topic = f"{prefix}hop"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await producer.start()
    await producer.send_and_wait(topic, b"-1")  # creates the topic
    await consumer.start()
    acked: dict[int, float] = {}
    read: dict[int, float] = {}

    async def reader() -> None:
        while len(read) < count:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    n = int(record.value)
                    if n >= 0:
                        read[n] = now

    async def write(n: int) -> None:
        await producer.send_and_wait(topic, str(n).encode())
        acked[n] = time.perf_counter()

    try:
        reading = asyncio.create_task(reader())
        tasks = []
        started = time.perf_counter()
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(write(n)))
        await asyncio.gather(*tasks)
        await asyncio.wait_for(reading, 60)
    finally:
        await consumer.stop()
        await producer.stop()
    return [read[n] - acked[n] for n in range(count)]


# ---------------------------------------------------------------------------- main


def percentiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


async def create_agents(http: aiohttp.ClientSession, router: str, count: int, hook: str) -> None:
    """Upsert ``count`` agents through the router API and wait until the router holds them."""
    for a in range(count):
        body = {
            "display_name": f"Agent {a}",
            "skills": {"general": 5},
            "capacity": {"whatsapp": 1000},
            "presence": "available",
            "endpoints": [{"kind": "webhook", "target": hook}],
        }
        async with http.put(f"{router}/v1/tenants/{TENANT}/agents/agent-{a}", json=body) as answer:
            if answer.status != 202:
                raise RuntimeError(f"agent upsert answered {answer.status}: {await answer.text()}")
    for a in range(count):
        for _ in range(300):
            async with http.get(f"{router}/v1/tenants/{TENANT}/agents/agent-{a}") as answer:
                if answer.status == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"the router never applied agent-{a}")


async def dispatch_times(bootstrap: str, topic: str) -> dict[int, float]:
    """When the router wrote each message's dispatch (broker record timestamps, wall clock)."""
    written: dict[int, float] = {}
    for record in await consume_all(bootstrap, topic, timeout=60, idle=1.0):
        data: dict[str, Any] = orjson.loads(record.value)
        n = index_of(str(data.get("conversation", {}).get("preview", "")))
        if n is not None:
            written.setdefault(n, record.timestamp / 1000)
    return written


async def run_stream(stack: dict[str, ServiceProcess], args: argparse.Namespace, count: int, timings: Timings) -> float:
    """Agents in, one warm-up second, then the measured stream; returns the achieved send rate."""
    receiver_port = int(stack["notifier"].env["BENCH_RECEIVER_PORT"])
    connector = aiohttp.TCPConnector(limit=256)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), connector=connector) as http,
        receiver(receiver_port, timings),
    ):
        await wait_ready(http, stack)
        agents = max(4, -(-(count // args.per_contact + 1000) // 1000))
        await create_agents(http, stack["router"].url, agents, f"http://127.0.0.1:{receiver_port}/hook")
        port = stack["ingest_social"].http_port
        sender = Sender(port)
        try:
            warm = int(args.rate)  # one second of traffic, not measured: connections, caches, first batches
            warm_range = range(10_000_000, 10_000_000 + warm)
            await steady(sender, port, warm_range.start, warm, args.rate, args.per_contact, timings)
            await until_delivered(timings, warm_range, 60)
            cpu = time.process_time()
            achieved = await steady(sender, port, 0, count, args.rate, args.per_contact, timings)
            await until_delivered(timings, range(count), 120)
            timings.client_cpu_s = time.process_time() - cpu
        finally:
            sender.close()
    return achieved


async def bench(bootstrap: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    prefix = f"bench-e2e-{uuid.uuid4().hex[:8]}."
    count = int(args.rate * args.seconds)
    hop = await broker_hop(bootstrap, prefix, int(args.rate * min(args.seconds, 5)), args.rate)
    stack = services(bootstrap, prefix, workdir, free_port())
    timings = Timings()
    try:
        for service in stack.values():
            service.start()
        achieved = await run_stream(stack, args, count, timings)
    finally:
        for service in stack.values():  # all at once: each drains on its own
            service.terminate()
        for service in stack.values():
            service.wait()
    written = await dispatch_times(bootstrap, f"{prefix}dispatch.v1")
    measured = [n for n in range(count) if n in timings.acked and n in timings.delivered]
    if not measured:
        raise RuntimeError(f"nothing was delivered; see the logs in {workdir}")
    latencies = [timings.delivered[n] - timings.acked[n] for n in measured]
    arrivals = [timings.delivered[n] for n in measured]
    to_dispatch = [written[n] - timings.acked[n] for n in measured if n in written]
    to_delivery = [timings.delivered[n] - written[n] for n in measured if n in written]
    p50, p99 = percentiles(latencies)
    hop_p50, hop_p99 = percentiles(hop)
    router_p50, router_p99 = percentiles(to_dispatch)
    notifier_p50, notifier_p99 = percentiles(to_delivery)
    return {
        "rate_target": args.rate,
        "rate_achieved": achieved,
        "delivered_per_s": (len(arrivals) - 1) / max(max(arrivals) - min(arrivals), 1e-3),
        "messages": count,
        "acknowledged": sum(n in timings.acked for n in range(count)),
        "delivered": len(measured),
        "failed_posts": timings.failed,
        "failed_by": dict(timings.answers),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max(latencies) * 1000,
        "client_cpu_s": timings.client_cpu_s,
        "seconds": args.seconds,
        "hop_p50_ms": hop_p50,
        "hop_p99_ms": hop_p99,
        "ack_to_dispatch_p50_ms": router_p50,
        "ack_to_dispatch_p99_ms": router_p99,
        "dispatch_to_delivery_p50_ms": notifier_p50,
        "dispatch_to_delivery_p99_ms": notifier_p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the measured stream")
    parser.add_argument("--per-contact", type=int, default=5, help="messages per customer (1 opens, rest follow up)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    with bootstrap_or_embedded() as bootstrap:
        figures = asyncio.run(bench(bootstrap, args, workdir))
    print(
        f"{figures['messages']:.0f} messages at {figures['rate_target']:.0f}/s "
        f"(achieved {figures['rate_achieved']:.0f}/s), "
        f"{figures['acknowledged']:.0f} acknowledged, {figures['delivered']:.0f} delivered, "
        f"{figures['failed_posts']:.0f} posts failed; this process used {figures['client_cpu_s']:.1f} CPU s; "
        f"service logs in {workdir}"
    )
    print(f"{'latency, ms':<44} {'p50':>8} {'p99':>8}")
    print(f"{'ingest ack -> delivery (four services)':<44} {figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f}")
    print(
        f"{'  of which ack -> dispatch written (router)':<44} "
        f"{figures['ack_to_dispatch_p50_ms']:>8.1f} {figures['ack_to_dispatch_p99_ms']:>8.1f}"
    )
    print(
        f"{'  of which dispatch -> delivered (notifier)':<44} "
        f"{figures['dispatch_to_delivery_p50_ms']:>8.1f} {figures['dispatch_to_delivery_p99_ms']:>8.1f}"
    )
    print(f"{'baseline: one broker hop (ack -> read)':<44} {figures['hop_p50_ms']:>8.1f} {figures['hop_p99_ms']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
