"""Micro benchmark: indexed agent selection against a scan of every agent, same state, same run.

One tenant with 10,000 agents and 100,000 open conversations (restored from changelog
records, which is timed too). Run it directly (not a test):

    .venv/bin/python services/router/bench/bench_decisions.py [--agents N] [--conversations N]

It prints decisions per second for the indexed choice and for the baseline scan, the
ratio, the inbound rate through the whole engine (match, select, state, effects), the
restore time and the resident memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from datetime import UTC, datetime, timedelta

from switchboard.common.events import Channel, DeliveryEndpoint, EndpointKind, Presence
from switchboard.router.assignment import select_agent, select_by_scan
from switchboard.router.engine import RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import AgentRecord, ConversationRecord, StateRecord
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
    engine = RouterEngine(parse_rules(rules_text()), clock)

    records = build_records(args.agents, args.conversations, clock.now, rng)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    engine.restore(records)
    restore_s = time.perf_counter() - started
    del records
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t = engine._tenants["bench"]
    queues = list(t.rules.queues)
    conv = next(iter(t.conversations.values()))
    variables = engine._vars_of(t, conv)
    cases = []
    for _ in range(max(args.decisions, args.scan_decisions)):
        queue = rng.choice(queues)
        step = t.requirements[queue.id][0]
        cases.append((queue, step, rng.choice(CHANNELS)))

    started = time.perf_counter()
    chosen = 0
    for queue, requirement, channel in cases[: args.decisions]:
        if select_agent(t.agents, t.index, channel, requirement, queue, set(), variables).agent is not None:
            chosen += 1
    indexed_s = time.perf_counter() - started

    started = time.perf_counter()
    agents = list(t.agents.values())
    agreed = 0
    for queue, requirement, channel in cases[: args.scan_decisions]:
        scanned = select_by_scan(agents, channel, requirement, queue, set(), variables)
        indexed = select_agent(t.agents, t.index, channel, requirement, queue, set(), variables).agent
        agreed += scanned is indexed
    scan_s = time.perf_counter() - started
    # the loop above also ran one indexed choice per scan; take it out of the scan's time
    scan_s -= indexed_s / args.decisions * args.scan_decisions

    messages = [
        inbound(tenant="bench", handle=f"new-{i}", channel=rng.choice(CHANNELS), text=rng.choice(SKILLS))
        for i in range(args.inbound)
    ]
    started = time.perf_counter()
    for message in messages:
        engine.handle(message)
    inbound_s = time.perf_counter() - started

    indexed_rate = args.decisions / indexed_s
    scan_rate = args.scan_decisions / scan_s
    print(f"agents={args.agents} open_conversations={args.conversations} (one tenant)")
    print(f"restore: {restore_s:.2f} s for {args.agents + args.conversations} records")
    print(f"memory: max RSS {rss_after / 1024:.0f} MiB ({(rss_after - rss_before) / 1024:.0f} MiB during restore)")
    print(
        f"indexed selection: {indexed_rate:,.0f} decisions/s "
        f"({indexed_s / args.decisions * 1e6:.1f} us each, {chosen}/{args.decisions} found an agent)"
    )
    print(f"baseline scan:     {scan_rate:,.0f} decisions/s ({scan_s / args.scan_decisions * 1e6:.0f} us each)")
    print(f"ratio: indexed is {indexed_rate / scan_rate:,.0f}x the scan; same agent in {agreed}/{args.scan_decisions}")
    print(
        f"engine.handle(inbound) incl. matching, selection, state records and effects: "
        f"{args.inbound / inbound_s:,.0f} messages/s"
    )


if __name__ == "__main__":
    main()
