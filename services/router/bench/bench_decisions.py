"""Micro benchmark: indexed agent selection against a scan of every agent, same state, same run.

One tenant with 10,000 agents and 100,000 open conversations (restored from changelog
records, which is timed too). Run it directly (not a test):

    .venv/bin/python services/router/bench/bench_decisions.py [--agents N] [--conversations N]

It prints, as CPU time of this process (the machine is shared), decisions per second for
the indexed choice beside the baseline scan; decoding the changelog bytes plus
``RouterEngine.restore`` beside the same with the garbage collector left running (the
previous behaviour); the resident memory the restored state adds per 100,000
conversations beside the size of its changelog; the same measured in a fresh process
(``--memory-probe``, one child process per way of restoring) for a restore that decodes
lazily beside one that decodes every record first; the inbound rate through the whole
engine (match, select, state, effects); and the read paths of the HTTP API (a queue's
first 50 waiting conversations, what one agent holds) beside the walks they replaced.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from switchboard.common.events import Channel, DeliveryEndpoint, EndpointKind, Presence
from switchboard.router.assignment import select_agent, select_by_scan
from switchboard.router.engine import RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import (
    AgentRecord,
    ConversationRecord,
    StateRecord,
    decode_state,
    decode_states,
    encode_state,
)
from switchboard.router.state import HOLDING, ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound

SKILLS = [f"skill{i:02d}" for i in range(20)]
CHANNELS = [Channel.EMAIL, Channel.CHAT]


def rules_text() -> str:
    queues = []
    for i, skill in enumerate(SKILLS):
        other = SKILLS[(i + 7) % len(SKILLS)]
        strategy = ("least_loaded", "longest_idle", "highest_proficiency")[i % 3]
        queues.append(
            f"      - id: q{i:02d}\n"
            f"        match: {{keywords: [{skill}]}}\n"
            f"        skills: {{{skill}: 3, {other}: 2}}\n"
            f"        strategy: {strategy}\n"
        )
    return "tenants:\n  bench:\n    default_queue: q00\n    queues:\n" + "".join(queues)


def build_records(agents: int, conversations: int, now: datetime, rng: random.Random) -> list[StateRecord]:
    records: list[StateRecord] = []
    endpoint = (DeliveryEndpoint(kind=EndpointKind.SLACK, target="U0"),)
    capacity = {Channel.EMAIL: 12, Channel.CHAT: 6}
    for i in range(agents):
        skills = {s: rng.randint(1, 10) for s in rng.sample(SKILLS, 6)}
        records.append(
            AgentRecord(
                tenant_id="bench",
                id=f"agent-{i:05d}",
                skills=skills,
                capacity=capacity,
                presence=Presence.AVAILABLE if rng.random() < 0.9 else Presence.AWAY,
                idle_since=now - timedelta(seconds=rng.randint(0, 36000)),
                endpoints=endpoint,
            )
        )
    slots = [(f"agent-{i:05d}", ch) for i in range(agents) for ch in CHANNELS for _ in range(capacity[ch] - 2)]
    rng.shuffle(slots)
    for n in range(conversations):
        agent_id, channel = slots[n % len(slots)]
        records.append(
            ConversationRecord(
                tenant_id="bench",
                id=f"conv-{n:06d}",
                channel=channel,
                provider="bench",
                contact_id=f"contact-{n}",
                opened_at=now - timedelta(minutes=rng.randint(1, 600)),
                queue_id=f"q{rng.randrange(len(SKILLS)):02d}",
                status=ConversationStatus.ASSIGNED,
                agent_id=agent_id,
                assigned_at=now,
                preview="x" * 120,
                message_ids=(f"bench:m-{n}",),
            )
        )
    return records


def waiting_records(conversations: int, now: datetime, rng: random.Random) -> list[StateRecord]:
    """One queue's worth of queued conversations over two channels and three priorities."""
    return [
        ConversationRecord(
            tenant_id="bench",
            id=f"wait-{n:06d}",
            channel=rng.choice(CHANNELS),
            provider="bench",
            contact_id=f"waiting-contact-{n}",
            opened_at=now - timedelta(seconds=rng.randint(1, 36000)),
            enqueued_at=now - timedelta(seconds=rng.randint(1, 36000)),
            queue_id="q00",
            status=ConversationStatus.QUEUED,
            priority=rng.choice([0, 0, 1, 5]),
        )
        for n in range(conversations)
    ]


def rss_mib() -> float:
    """The resident set size now (not the peak), from /proc."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def timed_restore(rules: str, raw: list[bytes], *, collector: bool) -> tuple[RouterEngine, float, float]:
    """Decode the changelog bytes and restore them; returns the engine, decode and restore CPU seconds.

    ``collector=True`` is the baseline: the cyclic garbage collector runs throughout, as it
    did before restore paused it.
    """
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    engine = RouterEngine(parse_rules(rules), clock)
    gc.collect()
    started = time.process_time()
    records = [decode_state(item) for item in raw] if collector else decode_states(raw)
    decoded = time.process_time()
    if collector:
        engine._restore(records)  # the restore body without the pause
    else:
        engine.restore(records)
    return engine, decoded - started, time.process_time() - decoded


def memory_probe(path: str, lazily: bool) -> float:
    """In a fresh process: the resident memory (MiB) a restore of the changelog bytes in
    ``path`` (one record a line) adds, decoding every record first (as a list) or lazily (one
    record at a time, each dropped once applied). Reading the file first leaves no freed
    memory behind for the restore to reuse unseen."""
    with open(path, "rb") as source:
        raw = source.read().split(b"\n")
    gc.collect()
    before = rss_mib()
    engine = RouterEngine(parse_rules(rules_text()), FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC)))
    if lazily:
        engine.restore(decode_state(item) for item in raw)
    else:
        engine.restore(decode_states(raw))
    gc.collect()
    return rss_mib() - before


def fresh_memory(raw: list[bytes], lazily: bool) -> float:
    """:func:`memory_probe` of ``raw`` in a child process."""
    with tempfile.NamedTemporaryFile(suffix=".changelog") as spool:
        spool.write(b"\n".join(raw))
        spool.flush()
        argv = [sys.executable, __file__, "--memory-probe", "lazily" if lazily else "list", spool.name]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout  # noqa: S603 - this script
    return float(out.split()[-1])


def time_per_call(calls: int, read: Callable[[], object]) -> float:
    """CPU seconds per call of ``read``."""
    started = time.process_time()
    for _ in range(calls):
        read()
    return (time.process_time() - started) / calls


Row = tuple[str, str, str]
"""A printed figure: what, result, baseline in the same run."""


def read_paths(engine: RouterEngine, waiting: int, rng: random.Random) -> tuple[list[Row], float, float]:
    """The API's reads against the walks they replaced, same state, same run; the rows and
    the two speed-up ratios (queue read, agent read)."""
    clock = engine._clock
    engine.restore(waiting_records(waiting, clock(), rng))
    t = engine._tenants["bench"]

    def waiting_lazily() -> list[str]:
        return [c.id for c in engine.waiting("bench", "q00", limit=50)]

    def waiting_sorted() -> list[str]:  # the previous read: every entry of the queue, sorted, then sliced
        entries = [e for (q, _, _), bucket in t.waiting.groups() if q == "q00" for e in bucket]
        return [t.conversations[c].id for _, _, c in sorted(entries)][:50]

    agent_id = max(t.held, key=lambda a: len(t.held[a]))
    open_statuses = [s for s in ConversationStatus if s is not ConversationStatus.RESOLVED]

    def held_index() -> list[str]:
        return [c.id for c in engine.held_by("bench", agent_id)]

    def held_walk() -> list[str]:  # the previous read: the newest 10,000 open conversations, filtered
        newest = engine.conversations("bench", statuses=open_statuses, limit=10_000)
        return [c.id for c in newest if c.agent_id == agent_id]

    assert waiting_lazily() == waiting_sorted()
    full = [c.id for c in t.conversations.values() if c.agent_id == agent_id and c.status in HOLDING]
    assert sorted(held_index()) == sorted(full)
    lazy_s, sorted_s = time_per_call(200, waiting_lazily), time_per_call(5, waiting_sorted)
    index_s, walk_s = time_per_call(2000, held_index), time_per_call(5, held_walk)
    rows = [
        (
            f"queue read, first 50 of {len(t.waiting):,} waiting",
            f"{lazy_s * 1e6:,.0f} us",
            f"full sort {sorted_s * 1e6:,.0f} us = {sorted_s / lazy_s:,.0f}x",
        ),
        (
            f"agent read ({len(full)} held)",
            f"{index_s * 1e6:,.1f} us",
            f"10k-newest walk {walk_s * 1e6:,.0f} us = {walk_s / index_s:,.0f}x",
        ),
        ("  held found (index / old walk)", f"{len(held_index())}", f"{len(held_walk())}"),
    ]
    return rows, sorted_s / lazy_s, walk_s / index_s


ENGINE_MADE_RULES = """
tenants:
  bench:
    default_queue: general
    sla_policies:
      std: {first_response: 1h, resolution: 8h}
    queues:
      - id: general
        skills: {support: 1}
        sla_policy: std
"""


def engine_made_memory(conversations: int, rng: random.Random) -> tuple[float, float]:
    """Conversations as the engine makes them (random ids, a contact each, SLA clocks and
    timers, a 180-character preview), restored from their changelog: live bytes per
    conversation (``tracemalloc``, contacts and timers included) and changelog bytes per one."""
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    source = RouterEngine(parse_rules(ENGINE_MADE_RULES), clock)
    agents = max(1, conversations // 100)
    for i in range(agents):
        source.handle(
            agent_event(f"agent-{i:05d}", tenant="bench", skills={"support": 3}, capacity={"email": 60, "chat": 60})
        )
    for i in range(conversations):
        clock.tick(1)
        channel = rng.choice(CHANNELS)
        source.handle(inbound(tenant="bench", handle=f"customer-{i}", channel=channel, text="hello " * 30))
    raw = [encode_state(r) for r in source.snapshot()]
    del source
    gc.collect()
    tracemalloc.start()
    engine = RouterEngine(parse_rules(ENGINE_MADE_RULES), FakeClock(clock.now))
    engine.restore(decode_state(item) for item in raw)
    gc.collect()
    live = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return live / conversations, sum(map(len, raw)) / conversations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--scan-decisions", type=int, default=200)
    parser.add_argument("--inbound", type=int, default=5_000)
    parser.add_argument("--waiting", type=int, default=100_000, help="queued conversations for the queue read")
    parser.add_argument("--engine-made", type=int, default=20_000, help="conversations made by the engine")
    parser.add_argument("--memory-probe", choices=["list", "lazily"], help=argparse.SUPPRESS)
    parser.add_argument("spool", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.memory_probe is not None:
        print(f"{memory_probe(args.spool, args.memory_probe == 'lazily'):.1f}")
        return
    rng = random.Random(7)  # noqa: S311 - benchmark data, not security
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    raw = [encode_state(r) for r in build_records(args.agents, args.conversations, clock.now, rng)]
    raw_mib = sum(map(len, raw)) / 2**20
    fresh_list = fresh_memory(raw, lazily=False)
    fresh_lazy = fresh_memory(raw, lazily=True)

    _, base_decode_s, base_restore_s = timed_restore(rules_text(), raw, collector=True)
    gc.collect()
    rss_before = rss_mib()
    engine, decode_s, restore_s = timed_restore(rules_text(), raw, collector=False)
    gc.collect()
    state_mib = rss_mib() - rss_before
    del raw
    clock = engine._clock  # type: ignore[assignment]

    t = engine._tenants["bench"]
    queues = list(t.rules.queues)
    conv = next(iter(t.conversations.values()))
    variables = engine._vars_of(t, conv)
    cases = []
    for _ in range(max(args.decisions, args.scan_decisions)):
        queue = rng.choice(queues)
        step = t.requirements[queue.id][0]
        cases.append((queue, step, rng.choice(CHANNELS)))

    started = time.process_time()
    chosen = 0
    for queue, requirement, channel in cases[: args.decisions]:
        if select_agent(t.agents, t.index, channel, requirement, queue, set(), variables).agent is not None:
            chosen += 1
    indexed_s = time.process_time() - started

    started = time.process_time()
    agents = list(t.agents.values())
    agreed = 0
    for queue, requirement, channel in cases[: args.scan_decisions]:
        scanned = select_by_scan(agents, channel, requirement, queue, set(), variables)
        indexed = select_agent(t.agents, t.index, channel, requirement, queue, set(), variables).agent
        agreed += scanned is indexed
    scan_s = time.process_time() - started
    # the loop above also ran one indexed choice per scan; take it out of the scan's time
    scan_s -= indexed_s / args.decisions * args.scan_decisions

    messages = [
        inbound(tenant="bench", handle=f"new-{i}", channel=rng.choice(CHANNELS), text=rng.choice(SKILLS))
        for i in range(args.inbound)
    ]
    started = time.process_time()
    for message in messages:
        engine.handle(message)
    inbound_s = time.process_time() - started

    reads, queue_read_x, agent_read_x = read_paths(engine, args.waiting, rng)
    made_bytes, made_raw = engine_made_memory(args.engine_made, rng)

    indexed_rate = args.decisions / indexed_s
    scan_rate = args.scan_decisions / scan_s
    per_100k = 100_000 / args.conversations
    base_total = base_decode_s + base_restore_s
    records = args.agents + args.conversations
    print(f"agents={args.agents} open_conversations={args.conversations} (one tenant); CPU seconds of this process")
    print(f"{'measure':<44} {'result':>22} {'baseline (same run)':>26}")
    rows = [
        (
            "assignment decisions (select_agent)",
            f"{indexed_rate:,.0f}/s",
            f"scan {scan_rate:,.0f}/s = {indexed_rate / scan_rate:,.0f}x",
        ),
        ("same agent as the scan", f"{agreed}/{args.scan_decisions}", ""),
        (
            f"decode {records:,} records from bytes",
            f"{decode_s:.2f} s",
            f"{base_decode_s:.2f} s (collector on)",
        ),
        (
            "engine.restore of them",
            f"{restore_s:.2f} s",
            f"{base_restore_s:.2f} s (collector on)",
        ),
        (
            "decode + restore",
            f"{decode_s + restore_s:.2f} s",
            f"{base_total:.2f} s = {base_total / (decode_s + restore_s):.1f}x",
        ),
        (
            "state memory per 100k conversations (RSS)",
            f"{state_mib * per_100k:.0f} MiB",
            f"changelog bytes {raw_mib * per_100k:.0f} MiB = {state_mib / raw_mib:.2f}x",
        ),
        (
            "  fresh process, decoding lazily (RSS)",
            f"{fresh_lazy * per_100k:.0f} MiB",
            f"decoded list first {fresh_list * per_100k:.0f} MiB = {fresh_list / fresh_lazy:.1f}x",
        ),
        (
            "  engine-made conversations (tracemalloc)",
            f"{made_bytes * 100_000 / 2**20:.0f} MiB",
            f"changelog bytes {made_raw * 100_000 / 2**20:.0f} MiB = {made_bytes / made_raw:.2f}x",
        ),
        (
            "engine.handle(new inbound), whole engine",
            f"{args.inbound / inbound_s:,.0f}/s",
            f"{args.inbound / inbound_s / indexed_rate:.3f}x the decision rate",
        ),
    ]
    rows.extend(reads)
    for name, result, baseline in rows:
        print(f"{name:<44} {result:>22} {baseline:>26}")
    if args.json:
        figures = {
            "agents": args.agents,
            "conversations": args.conversations,
            "decisions_per_s": indexed_rate,
            "scan_decisions_per_s": scan_rate,
            "same_agent": agreed,
            "scan_decisions": args.scan_decisions,
            "decode_restore_s": decode_s + restore_s,
            "decode_restore_collector_on_s": base_total,
            "state_mib_per_100k": state_mib * per_100k,
            "changelog_mib_per_100k": raw_mib * per_100k,
            "engine_inbound_per_s": args.inbound / inbound_s,
            "fresh_state_mib_per_100k_lazy_decode": fresh_lazy * per_100k,
            "fresh_state_mib_per_100k_list_decode": fresh_list * per_100k,
            "queue_read_speedup": queue_read_x,
            "agent_read_speedup": agent_read_x,
            "engine_made_mib_per_100k": made_bytes * 100_000 / 2**20,
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out)


if __name__ == "__main__":
    main()
