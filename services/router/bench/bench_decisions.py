"""Micro benchmark: indexed agent selection against a scan of every agent, same state, same run.

One tenant with 10,000 agents and 100,000 open conversations (restored from changelog
records, which is timed too). Run it directly (not a test):

    .venv/bin/python services/router/bench/bench_decisions.py [--agents N] [--conversations N]

It prints, as CPU time of this process (the machine is shared), decisions per second for
the indexed choice beside the baseline scan; decoding the changelog bytes plus
``RouterEngine.restore`` beside the same with the garbage collector left running (the
previous behaviour); the resident memory the restored state adds per 100,000
conversations beside the size of its changelog; and the inbound rate through the whole
engine (match, select, state, effects).
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
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
from switchboard.router.state import ConversationStatus
from switchboard.router.testing import FakeClock, inbound

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--scan-decisions", type=int, default=200)
    parser.add_argument("--inbound", type=int, default=5_000)
    args = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 - benchmark data, not security
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    raw = [encode_state(r) for r in build_records(args.agents, args.conversations, clock.now, rng)]
    raw_mib = sum(map(len, raw)) / 2**20

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
            "engine.handle(new inbound), whole engine",
            f"{args.inbound / inbound_s:,.0f}/s",
            f"{args.inbound / inbound_s / indexed_rate:.3f}x the decision rate",
        ),
    ]
    for name, result, baseline in rows:
        print(f"{name:<44} {result:>22} {baseline:>26}")


if __name__ == "__main__":
    main()
