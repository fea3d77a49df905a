"""The whole notifier (broker in, webhook out, results in) against a bare aiohttp client, with a slow receiver.

Run: ``.venv/bin/python services/notifier/bench/bench_delivery.py [--count N] [--latency 0.02] [--rounds R]``

A receiver in a child process answers every POST after ``--latency`` seconds (20 ms by
default, like a real helpdesk). In the same run, each round measures:

- ``bare``: an ``aiohttp`` client posting the N webhook bodies, 32 in flight (the ceiling);
- ``sequential``: the notifier with ``max_concurrent_deliveries=1`` (one dispatch at a time,
  as before per-conversation concurrency): N dispatches written to ``dispatch.v1`` of an
  embedded broker, timed until their N results are on ``delivery.v1``;
- ``concurrent``: the same with ``max_concurrent_deliveries=32``.

The dispatches belong to N/2 conversations (an assignment and a follow-up each) of one
tenant, so they all share one partition. Printed: deliveries per second and the ratio to
``bare`` (medians of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
import uuid

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from switchboard.common.broker import EmbeddedBroker, free_port
from switchboard.common.events import (
    Channel,
    ConversationSummary,
    DeliveryEndpoint,
    Dispatch,
    DispatchKind,
    EndpointKind,
)
from switchboard.common.kafka import RecordProducer
from switchboard.common.logging import configure_logging
from switchboard.common.runtime import KAFKA, running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_records
from switchboard.common.topics import Topics, ensure_topics
from switchboard.notifier.app import NOTIFIER, build_app
from switchboard.notifier.settings import NotifierSettings
from switchboard.notifier.sinks.webhook import webhook_body

SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="


def _serve(port: int, latency: float) -> None:
    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", slow)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.post(url, data=b"{}") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise RuntimeError("receiver did not start")


def _dispatches(n: int, url: str) -> list[Dispatch]:
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=url)
    out = []
    for i in range(n):
        out.append(
            Dispatch(
                tenant_id="bench",
                kind=DispatchKind.ASSIGNMENT if i % 2 == 0 else DispatchKind.FOLLOW_UP,
                agent_id="agent-1",
                conversation=ConversationSummary(
                    conversation_id=f"conv-{i // 2}",
                    channel=Channel.EMAIL,
                    customer_name="Customer",
                    subject="Where is my order?",
                    preview="Hello, my order has not arrived yet. " * 4,
                ),
                endpoints=(endpoint,),
            )
        )
    return out


async def _bare(dispatches: list[Dispatch], url: str, concurrency: int = 32) -> float:
    bodies = [webhook_body(d, int(time.time())) for d in dispatches]
    next_index = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                i = next_index
                next_index += 1
                async with session.post(url, data=bodies[i], headers={"Content-Type": "application/json"}) as r:
                    await r.read()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - start)


async def _notifier(kafka: KafkaSettings, dispatches: list[Dispatch], concurrency: int) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    await ensure_topics(kafka, topics, partitions=3)
    settings = NotifierSettings(
        topic_prefix=prefix,
        kafka=kafka,
        consumer_group=f"bench-{uuid.uuid4().hex[:8]}",
        http_port=0,
        webhook_secrets=[SecretStr(SECRET)],
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_allow_private=True,
        teams_enabled=False,
        inbox_enabled=False,
        max_concurrent_deliveries=concurrency,
        log_level="warning",
    )
    app = build_app(settings)
    async with running_app(app), RecordProducer(kafka) as producer:
        await asyncio.wait_for(app[NOTIFIER].handler.ready.wait(), 60)
        joined = app[KAFKA].consumers_ready()
        while not await joined():  # the clock starts once the consumer owns its partitions  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        start = time.perf_counter()
        await producer.send_many((topics.dispatch, d) for d in dispatches)
        results = await consume_records(kafka.bootstrap, topics.delivery, count=len(dispatches), timeout=600)
        elapsed = time.perf_counter() - start
    if len(results) != len(dispatches):
        raise RuntimeError(f"only {len(results)} of {len(dispatches)} results arrived")
    return len(dispatches) / elapsed


async def bench(count: int, rounds: int, url: str, kafka: KafkaSettings) -> dict[str, list[float]]:
    dispatches = _dispatches(count, url)
    runs: dict[str, list[float]] = {"bare": [], "sequential": [], "concurrent": []}
    for _ in range(rounds):  # interleaved, so a busy moment of the machine hits every variant
        runs["bare"].append(await _bare(dispatches, url))
        runs["sequential"].append(await _notifier(kafka, dispatches, 1))
        runs["concurrent"].append(await _notifier(kafka, dispatches, 32))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("warning", "console", service="bench")
    port = free_port()
    receiver = multiprocessing.get_context("spawn").Process(target=_serve, args=(port, args.latency), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{port}/hook"
    try:
        with EmbeddedBroker() as broker:
            kafka = KafkaSettings(bootstrap=broker.bootstrap, fetch_max_wait_ms=10, partitions=3)
            asyncio.run(_wait_up(url))
            runs = asyncio.run(bench(args.count, args.rounds, url, kafka))
    finally:
        receiver.terminate()
        receiver.join(5)
    median = {name: statistics.median(r) for name, r in runs.items()}
    print(
        f"{args.count} deliveries per variant and round ({args.count // 2} conversations, one partition), "
        f"receiver latency {args.latency * 1000:.0f} ms, {args.rounds} interleaved rounds; medians"
    )
    print(f"{'':>11}  {'deliveries/s':>12}  {'ratio to bare':>13}")
    for name in runs:
        print(f"{name:>11}  {median[name]:12.0f}  {median[name] / median['bare']:13.3f}")


if __name__ == "__main__":
    main()
