"""Signed webhook deliveries per second to a local receiver, against a bare aiohttp client.

Run: ``.venv/bin/python services/notifier/bench/bench_webhooks.py [--count N] [--concurrency C] [--host H]``

``--host localhost`` puts a host name in the URL instead of an IP literal, so the URL guard's
name resolution is part of each send (as for a real helpdesk URL).

The receiver runs in a child process (so it does not share the client's core) and answers
200 to every POST. In the same run, the client process posts N bodies three ways, each
with C requests in flight, and prints requests per second:

- ``bare``: ``aiohttp.ClientSession.post`` of pre-encoded bodies (the ceiling);
- ``sink``: :class:`WebhookSink` (JSON body, Standard Webhooks signature, URL policy check);
- ``deliverer``: the full path of the service, :class:`Deliverer` over the sink (idempotency
  store, circuit breaker, retry policy) plus building each :class:`DeliveryResult`.

The client side is one asyncio loop (one core). Two figures per variant: requests per
wall-clock second, and requests per CPU second of the client process (``time.process_time``),
which is the per-core throughput and is far less disturbed by other load on the machine.
Also printed: CPU microseconds per request, and ``paired``, the CPU ratio to ``bare`` taken
round by round (against the bare run of the same round) and then the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from switchboard.common.events import (
    Channel,
    ConversationSummary,
    DeliveryEndpoint,
    Dispatch,
    DispatchKind,
    EndpointKind,
)
from switchboard.notifier.deliverer import Deliverer
from switchboard.notifier.signing import WebhookSigner
from switchboard.notifier.sink import SinkRegistry
from switchboard.notifier.sinks.webhook import WebhookSink, webhook_body
from switchboard.notifier.urlguard import UrlPolicy

SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="


def _serve(port: int) -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    return [
        Dispatch(
            tenant_id="bench",
            kind=DispatchKind.ASSIGNMENT,
            agent_id="agent-1",
            conversation=ConversationSummary(
                conversation_id=f"conv-{i}",
                channel=Channel.EMAIL,
                customer_name="Customer",
                subject="Where is my order?",
                preview="Hello, my order has not arrived yet. " * 4,
            ),
            endpoints=(endpoint,),
        )
        for i in range(n)
    ]


async def _run(n: int, concurrency: int, one: Callable[[int], Awaitable[bool]]) -> tuple[float, float, int]:
    """(requests per wall-clock second, requests per CPU second of this process, failures)."""
    next_index = 0
    failures = 0

    async def worker() -> None:
        nonlocal next_index, failures
        while next_index < n:
            i = next_index
            next_index += 1
            if not await one(i):
                failures += 1

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start), n / max(1e-9, time.process_time() - cpu), failures


async def bench(
    count: int, concurrency: int, url: str, rounds: int, host: str = "127.0.0.1"
) -> dict[str, list[tuple[float, float, int]]]:
    dispatches = _dispatches(count, url)
    bodies = [webhook_body(d, int(time.time())) for d in dispatches]
    connector = aiohttp.TCPConnector(limit=concurrency)
    results: dict[str, list[tuple[float, float, int]]] = {"bare": [], "sink": [], "deliverer": []}
    async with aiohttp.ClientSession(connector=connector) as session:
        sink = WebhookSink(session, WebhookSigner([SECRET]), UrlPolicy((host,), allow_private=True))
        deliverer = Deliverer(SinkRegistry([sink]))

        async def bare(i: int) -> bool:
            async with session.post(url, data=bodies[i], headers={"Content-Type": "application/json"}) as r:
                await r.read()
                return r.status == 200

        async def via_sink(i: int) -> bool:
            return (await sink.deliver(dispatches[i], dispatches[i].endpoints[0])).ok

        async def via_deliverer(i: int) -> bool:
            return not (await deliverer.deliver(dispatches[i]))[0].failed

        await _run(min(500, count), concurrency, bare)  # warm up connections
        for _ in range(rounds):  # interleaved, so a busy moment of the machine hits every variant
            for name, fn in (("bare", bare), ("sink", via_sink), ("deliverer", via_deliverer)):
                results[name].append(await _run(count, concurrency, fn))
                deliverer.store = type(deliverer.store)()  # the next round delivers the same ids again
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the medians here as JSON")
    parser.add_argument(
        "--host", default="127.0.0.1", help="receiver host in the URL; a name (localhost) exercises name resolution"
    )
    args = parser.parse_args()
    port = _free_port()
    receiver = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    receiver.start()
    url = f"http://{args.host}:{port}/hook"
    try:
        asyncio.run(_wait_up(url))
        results = asyncio.run(bench(args.count, args.concurrency, url, args.rounds, args.host))
    finally:
        receiver.terminate()
        receiver.join(5)
    wall = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    cpu = {name: statistics.median(r[1] for r in runs) for name, runs in results.items()}
    # The same ratio taken round by round (each variant against the bare run just before it),
    # then the median: less moved by load that changes over the run than a ratio of medians.
    paired = {
        name: statistics.median(r[1] / b[1] for r, b in zip(runs, results["bare"], strict=True))
        for name, runs in results.items()
    }
    print(
        f"{args.count} POSTs per variant and round, {args.rounds} interleaved rounds, "
        f"{args.concurrency} in flight, receiver in a child process; medians of rounds"
    )
    print(
        f"{'':>10}  {'wall req/s':>10}  {'ratio':>5}  {'req/CPU-s':>10}  {'ratio':>5}  "
        f"{'CPU us/req':>10}  {'paired':>6}  failures"
    )
    for name, runs in results.items():
        print(
            f"{name:>10}  {wall[name]:10.0f}  {wall[name] / wall['bare']:5.2f}  "
            f"{cpu[name]:10.0f}  {cpu[name] / cpu['bare']:5.2f}  {1e6 / cpu[name]:10.1f}  "
            f"{paired[name]:6.2f}  {sum(r[2] for r in runs)}"
        )
    if args.json:
        figures = {f"{name}_wall_per_s": value for name, value in wall.items()}
        figures |= {f"{name}_cpu_per_s": value for name, value in cpu.items()}
        figures |= {f"{name}_cpu_ratio_paired": value for name, value in paired.items()}
        figures |= {"failures": sum(r[2] for runs in results.values() for r in runs), "count": args.count}
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out)


if __name__ == "__main__":
    main()
