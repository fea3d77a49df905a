"""The whole router service (consume, decide, changelog, produce) against a plain relay, same broker, same run.

Run: ``.venv/bin/python services/router/bench/bench_service.py [--messages 20000] [--json FILE]``

The broker is ``SWITCHBOARD_KAFKA_BOOTSTRAP`` when set, otherwise an embedded Tansu broker
started for the run. One tenant (one partition, so one consumer does all the work: the
figure is per core) with ``--agents`` agents of chat capacity 1,000 each, so nothing waits.

- ``router``: the real :func:`switchboard.router.app.build_app` in this process. Phase one
  writes the agents as ``agent-upserted`` records and runs the router until it holds them
  (their changelog is written), then stops it gracefully. Phase two preloads ``--messages``
  inbound chat messages (``--per-contact`` messages per customer: the first opens a
  conversation and is assigned, the rest are follow-ups) and starts the router again: it
  restores the agents from its changelog and turns every message into one dispatch.
- ``relay``: the baseline, a plain aiokafka consumer that reads the same preloaded inbound
  records, decodes each into its schema record, writes it back out with the same
  :class:`RecordProducer` and commits, batch by batch.

Both rates come from the broker timestamps of their output records (first to last), so
neither includes a group join, a restore or the benchmark's own reading of the results.
Wall-clock rates swing with whatever else runs on the machine, so each side's CPU time per
message is printed too: this process's CPU seconds (the broker runs in its own process)
over the relay's loop and over the router's second phase, each with the benchmark's own
reading of the output records, divided by the number of messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from switchboard.common.broker import bootstrap_or_embedded
from switchboard.common.events import (
    AgentUpserted,
    Channel,
    ContactHandle,
    ContactIdentity,
    DeliveryEndpoint,
    EndpointKind,
    InboundMessage,
    Presence,
    RecordCodec,
)
from switchboard.common.kafka import RecordProducer
from switchboard.common.logging import configure_logging
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.api import ROUTER
from switchboard.router.app import build_app
from switchboard.router.settings import RouterSettings

TENANT = "bench"
RULES = """\
tenants:
  bench:
    default_queue: general
    queues:
      - id: general
        match: {channels: [chat]}
        strategy: least_loaded
"""


def agents(count: int) -> list[AgentUpserted]:
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="http://127.0.0.1:9/hook")
    return [
        AgentUpserted(
            tenant_id=TENANT,
            agent_id=f"agent-{i:03d}",
            skills={"general": 5},
            capacity={Channel.CHAT: 1000},
            presence=Presence.AVAILABLE,
            endpoints=(endpoint,),
        )
        for i in range(count)
    ]


def messages(count: int, per_contact: int) -> list[InboundMessage]:
    return [
        InboundMessage(
            tenant_id=TENANT,
            channel=Channel.CHAT,
            provider="webchat",
            provider_message_id=f"bench-{i}",
            contact=ContactIdentity(
                display_name="Customer", handles=(ContactHandle(kind="chat", value=f"visitor-{i // per_contact}"),)
            ),
            text="Hello, my order has not arrived yet, could you check where it is?",
        )
        for i in range(count)
    ]


def rate(timestamps_ms: list[int]) -> float:
    """Records per second between the first and the last output record."""
    span = (max(timestamps_ms) - min(timestamps_ms)) / 1000
    return (len(timestamps_ms) - 1) / max(span, 1e-3)


def router_settings(kafka: KafkaSettings, prefix: str, rules: Path, phase: int) -> RouterSettings:
    return RouterSettings(
        kafka=kafka,
        topic_prefix=prefix,
        consumer_group=f"router-{prefix.rstrip('.')}-{phase}",
        rules_file=rules,
        http_host="127.0.0.1",
        http_port=0,
        advertised_url="http://127.0.0.1:1",
        log_level="warning",
    )


async def run_router(
    kafka: KafkaSettings, agent_count: int, inbound: list[InboundMessage], workdir: Path
) -> tuple[float, float]:
    """The router's rate, and this process's CPU seconds over its second phase."""
    prefix = f"bench-router-{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    await ensure_topics(kafka, topics)
    rules = workdir / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    async with RecordProducer(kafka) as producer:
        await producer.send_many((topics.agent_events, a) for a in agents(agent_count))
        app = build_app(router_settings(kafka, prefix, rules, 1))
        async with running_app(app):
            service = app[ROUTER]
            async with asyncio.timeout(120):
                while len(service.engine.agents(TENANT)) < agent_count:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # one more poll: the batch's changelog and commit are written
        await producer.send_many((topics.inbound, m) for m in inbound)
    # A new group: it joins at once (the embedded broker is slow to re-admit a group whose
    # member just left), restores the agents from the changelog like any restart, and
    # re-reads the agent events (upserts of the same agents: no dispatches).
    app = build_app(router_settings(kafka, prefix, rules, 2))
    cpu = time.process_time()
    async with running_app(app):
        records = await consume(kafka.bootstrap, topics.dispatch, count=len(inbound), timeout=600)
    return rate([r.timestamp for r in records]), time.process_time() - cpu


async def run_relay(kafka: KafkaSettings, inbound: list[InboundMessage]) -> tuple[float, float]:
    """The relay's rate, and this process's CPU seconds over its loop and the reading of its output."""
    prefix = f"bench-relay-{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    await ensure_topics(kafka, topics)
    output = topics.dispatch  # the relay writes where the router would
    codec = RecordCodec()
    async with RecordProducer(kafka) as producer:
        await producer.send_many((topics.inbound, m) for m in inbound)
        consumer = AIOKafkaConsumer(
            topics.inbound,
            **kafka.client_options(),
            group_id=f"relay-{prefix.rstrip('.')}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            max_poll_records=kafka.max_poll_records,
        )
        cpu = time.process_time()
        await consumer.start()
        try:
            relayed = 0
            async with asyncio.timeout(600):
                while relayed < len(inbound):
                    batch = await consumer.getmany(timeout_ms=100)
                    for records in batch.values():
                        for record in records:
                            await producer.send_soon(output, codec.decode(record.value))
                            relayed += 1
                    if batch:
                        await producer.flush()
                        await consumer.commit()
        finally:
            await consumer.stop()
    records = await consume(kafka.bootstrap, output, count=len(inbound), timeout=600)
    return rate([r.timestamp for r in records]), time.process_time() - cpu


async def bench(bootstrap: str, count: int, agent_count: int, per_contact: int, workdir: Path) -> dict[str, float]:
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=1, fetch_max_wait_ms=10)
    inbound = messages(count, per_contact)
    relay, relay_cpu = await run_relay(kafka, inbound)
    router, router_cpu = await run_router(kafka, agent_count, inbound, workdir)
    return {
        "router_messages_per_s": router,
        "relay_messages_per_s": relay,
        "router_cpu_us_per_message": router_cpu / count * 1e6,
        "relay_cpu_us_per_message": relay_cpu / count * 1e6,
        "messages": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--per-contact", type=int, default=4, help="messages per customer (1 opens, rest follow up)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.messages > args.agents * 1000 * args.per_contact:
        parser.error("not enough agent capacity: raise --agents")
    configure_logging("warning", "json")
    workdir = Path(tempfile.mkdtemp(prefix="bench-router-"))
    started = time.perf_counter()
    with bootstrap_or_embedded() as bootstrap:
        figures = asyncio.run(bench(bootstrap, args.messages, args.agents, args.per_contact, workdir))
    router, relay = figures["router_messages_per_s"], figures["relay_messages_per_s"]
    print(f"{args.messages} inbound messages, one tenant (one partition), {args.agents} agents; broker timestamps")
    relay_cpu, router_cpu = figures["relay_cpu_us_per_message"], figures["router_cpu_us_per_message"]
    print(f"{'':<44} {'messages/s':>10} {'ratio':>6} {'CPU us/msg':>11} {'ratio':>6}")
    print(f"{'relay (consume, decode, produce, commit)':<44} {relay:>10.0f} {1.0:>6.2f} {relay_cpu:>11.0f} {1.0:>6.2f}")
    print(
        f"{'router (consume, decide, changelog, produce)':<44} {router:>10.0f} {router / relay:>6.2f}"
        f" {router_cpu:>11.0f} {router_cpu / relay_cpu:>6.2f}"
    )
    print(f"({time.perf_counter() - started:.0f} s in all)")
    if args.json:
        args.json.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
