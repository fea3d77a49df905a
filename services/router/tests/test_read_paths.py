"""Read paths of the engine that the HTTP API serves: what an agent holds, a queue's waiting list."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest

from switchboard.common.events import (
    Channel,
    ConversationResolved,
    ConversationTransferred,
    OfferDeclined,
    ReplySent,
)
from switchboard.router.engine import Effects, RouterEngine, UnknownTenant
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import ConversationRecord
from switchboard.router.state import HOLDING, Conversation, ConversationStatus, WaitingIndex
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
options: {sticky_window: 0s}
tenants:
  acme:
    default_queue: general
    queues:
      - id: sales
        match: {keywords: [quote]}
        skills: {sales: 1}
        mode: offer
      - id: general
        skills: {support: 2}
        relaxation:
          - {after: 1h, lower_skills: {support: 1}}
"""


def setup() -> tuple[RouterEngine, FakeClock]:
    clock = FakeClock()
    return RouterEngine(parse_rules(RULES), clock), clock


def opened(fx: Effects) -> str:
    ids = [e.conversation_id for e in fx.log]
    assert ids, fx
    return ids[-1]


def held_ids(engine: RouterEngine, agent_id: str) -> list[str]:
    return [c.id for c in engine.held_by("acme", agent_id)]


def held_by_walk(engine: RouterEngine, agent_id: str) -> list[str]:
    """What the HTTP API used to compute: every open conversation whose agent is this one."""
    found = [
        c
        for c in engine.conversations("acme", statuses=list(ConversationStatus), limit=1_000_000)
        if c.agent_id == agent_id and c.status in HOLDING
    ]
    return [c.id for c in sorted(found, key=lambda c: (c.opened_at, c.id), reverse=True)]


# ------------------------------------------------------------------------------ held_by


def test_held_by_lists_assigned_offered_and_waiting_work_newest_first() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"support": 2, "sales": 1}, capacity={"email": 5, "chat": 5}))
    engine.handle(agent_event("a2", skills={"support": 2}, capacity={"email": 1}))
    first = opened(engine.handle(inbound(handle="c1", text="hello")))  # a1 (least loaded, then id)
    clock.tick(1)
    second = opened(engine.handle(inbound(handle="c2", text="hello")))  # a2
    clock.tick(1)
    offered = opened(engine.handle(inbound(handle="c3", channel="chat", text="a quote")))  # offered to a1
    clock.tick(1)
    waiting = opened(engine.handle(inbound(handle="c4", text="hello")))  # a1
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=waiting, waiting_for_customer=True))
    clock.tick(1)
    resolved = opened(engine.handle(inbound(handle="c5", text="hello")))  # a1, then resolved
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=resolved))

    statuses = {c.id: c.status for c in engine.held_by("acme", "a1")}
    assert statuses == {
        waiting: ConversationStatus.WAITING_FOR_CUSTOMER,
        offered: ConversationStatus.OFFERED,
        first: ConversationStatus.ASSIGNED,
    }
    assert held_ids(engine, "a1") == [waiting, offered, first]  # newest opened first
    assert held_ids(engine, "a2") == [second]
    assert held_ids(engine, "a1") == held_by_walk(engine, "a1")


def test_held_by_follows_declines_transfers_and_resolutions() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", skills={"support": 2, "sales": 1}, capacity={"email": 5}))
    engine.handle(agent_event("a2", skills={"support": 2, "sales": 1}, capacity={"email": 5}))
    offer = opened(engine.handle(inbound(handle="c1", text="a quote")))
    holder, other = ("a1", "a2") if engine.held_by("acme", "a1") else ("a2", "a1")
    assert held_ids(engine, holder) == [offer]

    engine.handle(OfferDeclined(tenant_id="acme", agent_id=holder, conversation_id=offer))
    assert held_ids(engine, holder) == []
    assert held_ids(engine, other) == [offer]  # offered to the next best

    engine.handle(ConversationTransferred(tenant_id="acme", agent_id=other, conversation_id=offer, to_agent_id=holder))
    assert (held_ids(engine, holder), held_ids(engine, other)) == ([offer], [])

    engine.handle(ConversationResolved(tenant_id="acme", agent_id=holder, conversation_id=offer))
    assert held_ids(engine, holder) == []


def test_held_by_of_unknown_agents_and_tenants() -> None:
    engine, _ = setup()
    assert engine.held_by("acme", "nobody") == []  # no state for the tenant yet
    engine.handle(agent_event("a1", skills={"support": 2}, capacity={"email": 1}))
    engine.handle(inbound(handle="c1"))
    assert engine.held_by("acme", "nobody") == []
    with pytest.raises(UnknownTenant):
        engine.held_by("nobody", "a1")


def test_held_by_agrees_with_a_walk_of_every_conversation_through_random_traffic() -> None:
    engine, clock = setup()
    rng = random.Random(5)
    agents = [f"a{i}" for i in range(4)]
    for agent_id in agents:
        engine.handle(agent_event(agent_id, skills={"support": 2, "sales": 1}, capacity={"email": 3, "chat": 2}))
    opened_ids: list[str] = []
    for step in range(300):
        clock.tick(rng.choice([0, 1, 30]))
        action = rng.random()
        held = [c for a in agents for c in engine.held_by("acme", a)]
        if action < 0.5 or not held:
            text = "a quote" if rng.random() < 0.3 else "hello"
            channel = rng.choice(["email", "chat"])
            opened_ids.append(opened(engine.handle(inbound(handle=f"c{step}", channel=channel, text=text))))
        else:
            conv = rng.choice(held)
            assert conv.agent_id is not None
            if conv.status is ConversationStatus.OFFERED and rng.random() < 0.5:
                engine.handle(OfferDeclined(tenant_id="acme", agent_id=conv.agent_id, conversation_id=conv.id))
            else:
                engine.handle(ConversationResolved(tenant_id="acme", agent_id=conv.agent_id, conversation_id=conv.id))
        for agent_id in agents:
            assert held_ids(engine, agent_id) == held_by_walk(engine, agent_id)
    assert sum(len(held_ids(engine, a)) for a in agents) > 0


# ------------------------------------------------------------------------------ waiting


def _restored_queue(rng: random.Random, count: int) -> tuple[RouterEngine, list[Conversation]]:
    """A tenant with ``count`` queued conversations in ``general`` spread over priorities,
    relaxation steps, channels and ages (restored, so each field is exactly as chosen)."""
    clock = FakeClock()
    engine = RouterEngine(parse_rules(RULES), clock)
    records = []
    for n in range(count):
        when = clock.now - timedelta(seconds=rng.randrange(0, 50))  # many share an age: ties break by id
        records.append(
            ConversationRecord(
                tenant_id="acme",
                id=f"conv-{rng.randrange(10**9):09d}-{n}",
                channel=rng.choice([Channel.EMAIL, Channel.CHAT, Channel.SMS]),
                provider="p",
                contact_id=f"contact-{n}",
                opened_at=when,
                enqueued_at=when,
                queue_id="general",
                status=ConversationStatus.QUEUED,
                priority=rng.choice([0, 0, 1, 5]),
                step=rng.choice([0, 1]),
            )
        )
    engine.restore(records)
    queued = [c for c in (engine.conversation("acme", r.id) for r in records) if c is not None]
    return engine, queued


def _service_order(conversations: list[Conversation]) -> list[str]:
    def key(c: Conversation) -> tuple[int, float, str]:
        assert c.enqueued_at is not None
        return (-c.priority, c.enqueued_at.timestamp(), c.id)

    return [c.id for c in sorted(conversations, key=key)]


def test_waiting_is_served_by_priority_then_age_across_steps_and_channels() -> None:
    engine, queued = _restored_queue(random.Random(11), 400)
    expected = _service_order(queued)
    assert len({(c.step, c.channel) for c in queued}) == 6  # the merge spans every group
    assert [c.id for c in engine.waiting("acme", "general")] == expected
    for limit in (0, 1, 7, 50, 399, 400, 1000):
        assert [c.id for c in engine.waiting("acme", "general", limit=limit)] == expected[:limit]
    assert engine.waiting("acme", "sales", limit=10) == []
    assert engine.waiting("nobody", "general", limit=10) == []  # no state held for it
    with pytest.raises(ValueError, match="limit"):
        engine.waiting("acme", "general", limit=-1)


def test_waiting_follows_assignments_and_new_arrivals() -> None:
    engine, clock = setup()
    ids = []
    for n in range(5):
        ids.append(opened(engine.handle(inbound(handle=f"c{n}", channel="email" if n % 2 else "chat"))))
        clock.tick(1)
    assert [c.id for c in engine.waiting("acme", "general", limit=3)] == ids[:3]
    engine.handle(agent_event("a1", skills={"support": 2}, capacity={"chat": 1}))  # takes the oldest chat
    assert [c.id for c in engine.waiting("acme", "general", limit=3)] == [ids[1], ids[2], ids[3]]
    assert [c.id for c in engine.waiting("acme", "general")] == [ids[1], ids[2], ids[3], ids[4]]


def test_waiting_index_reads_the_queue_lazily() -> None:
    """Taking the first entries reads a few from each group, not the whole queue."""
    rng = random.Random(3)
    index = WaitingIndex()
    clock = FakeClock()
    convs = []
    for n in range(3000):
        conv = Conversation(
            id=f"c{n:05d}",
            channel=(Channel.EMAIL, Channel.CHAT)[n % 2],
            provider="p",
            contact_id=f"k{n}",
            opened_at=clock.now,
            queue_id="general" if n % 3 else "other",
            enqueued_at=clock.now + timedelta(seconds=rng.randrange(1000)),
            priority=rng.choice([0, 1]),
        )
        convs.append(conv)
        index.add(conv)
    reads = 0

    class Counting(list[tuple[int, float, str]]):
        def __iter__(self) -> Iterator[tuple[int, float, str]]:
            nonlocal reads
            for entry in super().__iter__():
                reads += 1
                yield entry

    index._groups = {group: Counting(bucket) for group, bucket in index._groups.items()}
    first = list(zip(range(5), index.in_queue("general"), strict=False))
    expected = _service_order([c for c in convs if c.queue_id == "general"])[:5]
    assert [conv_id for _, conv_id in first] == expected
    assert reads <= 5 + 2  # five taken, and at most one looked ahead in each of the two groups
