"""Property tests: random event sequences never break the routing invariants."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.common.events import (
    Channel,
    ConversationResolved,
    OfferAccepted,
    OfferDeclined,
    Presence,
    PresenceChanged,
    ReplySent,
)
from switchboard.router.assignment import select_agent, select_by_scan
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import StateEntity, StateRecord, encode_entity, encode_state, state_record
from switchboard.router.state import HOLDING, ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = parse_rules("""
options: {sticky_window: 30m, reopen_window: 1h, offline_grace: 2m}
tenants:
  acme:
    default_queue: general
    sla_policies:
      std:
        first_response: 5m
        escalations:
          - {target: first_response, at: 50%, action: raise_priority}
          - {target: first_response, at: 100%, action: reassign}
    queues:
      - id: billing
        match: {keywords: [invoice]}
        skills: {billing: 5}
        mode: offer
        offer_timeout: 45s
        strategy: highest_proficiency
        sla_policy: std
        relaxation:
          - {after: 2m, lower_skills: {billing: 2}}
          - {after: 4m, widen_to: [spanish]}
      - id: spanish
        match: {languages: [es]}
        skills: {spanish: 4}
        strategy: longest_idle
      - id: general
        strategy: least_loaded
        sla_policy: std
""")

CHANNELS = [Channel.EMAIL, Channel.CHAT, Channel.SMS]
AGENTS = [f"agent-{i}" for i in range(5)]
PRESENCES = [Presence.AVAILABLE, Presence.AVAILABLE, Presence.BUSY, Presence.OFFLINE]


def capacity_of(index: int) -> dict[str, int]:
    return {"email": index % 3, "chat": 1 + index % 2, "sms": 1}


upserts = st.tuples(
    st.just("upsert"),
    st.integers(0, len(AGENTS) - 1),
    st.integers(0, 10),
    st.integers(0, 10),
    st.sampled_from(PRESENCES),
)
ops = st.one_of(
    upserts,
    st.tuples(st.just("presence"), st.integers(0, len(AGENTS) - 1), st.sampled_from(PRESENCES)),
    st.tuples(
        st.just("inbound"),
        st.integers(0, 6),
        st.sampled_from(CHANNELS),
        st.sampled_from(["hello", "invoice please", "hola"]),
    ),
    st.tuples(st.sampled_from(["accept", "decline", "resolve", "reply"]), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.integers(1, 200)),
)


def apply(engine: RouterEngine, clock: FakeClock, op: tuple[Any, ...]) -> Effects | None:
    """Apply one operation; the engine's effects, or ``None`` when the operation was skipped."""
    t = engine._tenants.get("acme")
    kind = op[0]
    if kind == "upsert":
        _, index, billing, spanish, presence = op
        skills = {k: v for k, v in (("billing", billing), ("spanish", spanish)) if v > 0}
        return engine.handle(agent_event(AGENTS[index], skills=skills, capacity=capacity_of(index), presence=presence))
    if kind == "presence":
        if t is not None and AGENTS[op[1]] in t.agents:
            return engine.handle(PresenceChanged(tenant_id="acme", agent_id=AGENTS[op[1]], presence=op[2]))
        return None
    if kind == "inbound":
        _, contact, channel, text = op
        language = "es" if text == "hola" else None
        return engine.handle(inbound(handle=f"c{contact}", channel=channel, text=text, language=language))
    if kind == "tick":
        clock.tick(op[1])
        return engine.advance()
    if t is None or not t.conversations:
        return None
    conv = t.conversations[sorted(t.conversations)[op[1] % len(t.conversations)]]
    agent = conv.agent_id or AGENTS[0]
    if kind == "accept":
        return engine.handle(OfferAccepted(tenant_id="acme", agent_id=agent, conversation_id=conv.id))
    if kind == "decline":
        return engine.handle(OfferDeclined(tenant_id="acme", agent_id=agent, conversation_id=conv.id))
    if kind == "resolve":
        return engine.handle(ConversationResolved(tenant_id="acme", agent_id=agent, conversation_id=conv.id))
    return engine.handle(ReplySent(tenant_id="acme", agent_id=agent, conversation_id=conv.id))


def check_invariants(engine: RouterEngine) -> None:
    t = engine._tenants.get("acme")
    if t is None:
        return
    held: Counter[tuple[str, Channel]] = Counter()
    for conv in t.conversations.values():
        if conv.status in (ConversationStatus.OFFERED, ConversationStatus.ASSIGNED):
            assert conv.agent_id is not None, conv
        if conv.agent_id is not None:
            # waiting-for-customer work may have been returned by an offline agent (no holder)
            assert conv.status in HOLDING, conv
        if conv.agent_id is not None:
            held[(conv.agent_id, conv.channel)] += 1
            # a conversation is held by exactly one agent, and that agent's set knows it
            owners = [a for a, convs in t.held.items() if conv.id in convs]
            assert owners == [conv.agent_id]
        assert (conv.id in t.waiting) == (conv.status is ConversationStatus.QUEUED and conv.queue_id is not None)
    for agent in t.agents.values():
        for channel in CHANNELS:
            load = agent.load.get(channel, 0)
            assert load == held[(agent.id, channel)]
            assert load <= agent.capacity.get(channel, 0), (agent.id, channel, load)
    # the queue stats kept up to date equal a recount of every conversation
    for stats in engine.queue_stats("acme"):
        mine = [c for c in t.conversations.values() if c.queue_id == stats.queue_id]
        waiting = [c for c in mine if c.id in t.waiting]
        assert stats.depth == len(waiting)
        assert stats.oldest_enqueued_at == min((c.enqueued_at for c in waiting if c.enqueued_at), default=None)
        assert stats.offered == sum(c.status is ConversationStatus.OFFERED for c in mine)
        held = (ConversationStatus.ASSIGNED, ConversationStatus.WAITING_FOR_CUSTOMER)
        assert stats.assigned == sum(c.status in held for c in mine)
    for conv_id in t.waiting.all_ids():
        conv = t.conversations[conv_id]
        requirement = t.requirement(conv)
        queue = t.rules.queue(conv.queue_id or "")
        assert requirement is not None
        assert queue is not None
        variables = engine._vars_of(t, conv)
        # no eligible agent is left idle while work waits (checked by scanning everyone)
        free = select_by_scan(t.agents.values(), conv.channel, requirement, queue, conv.declined_by, variables)
        assert free is None, (conv_id, free)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(upserts, min_size=2, max_size=5), st.lists(ops, min_size=1, max_size=50))
def test_random_sequences_keep_the_invariants(roster: list[tuple[Any, ...]], sequence: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    engine = RouterEngine(RULES, clock)
    for op in [*roster, *sequence]:
        apply(engine, clock, op)
        check_invariants(engine)


def encoded(record: StateRecord | None) -> bytes | None:
    return encode_state(record) if record is not None else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(upserts, min_size=2, max_size=5), st.lists(ops, min_size=1, max_size=50))
def test_state_records_built_at_the_batch_end_equal_those_built_after_each_call(
    roster: list[tuple[Any, ...]], sequence: list[tuple[Any, ...]]
) -> None:
    """The service builds a changed entity's record only when it writes the batch, from the
    entity as it is then (``Effects.state`` holds the entity): that is right only if every
    call that changes an entity names it in its own ``state``, so that the record built at
    the end equals the one built right after the entity's last change."""
    clock = FakeClock()
    engine = RouterEngine(RULES, clock)
    batch: dict[str, StateEntity | None] = {}
    after_each_call: dict[str, bytes | None] = {}
    for op in [*roster, *sequence]:
        fx = apply(engine, clock, op)
        if fx is None:
            continue
        batch.update(fx.state)
        after_each_call.update((key, encoded(record)) for key, record in fx.records().items())
    at_the_end = {key: encoded(state_record(key, entity)) for key, entity in batch.items()}
    assert at_the_end == after_each_call
    # and what the service writes (without the model where it can) is those very bytes
    assert {key: encode_entity(key, entity) for key, entity in batch.items()} == after_each_call


@settings(max_examples=150, deadline=None)
@given(
    agents=st.lists(
        st.tuples(
            st.integers(0, 10),
            st.integers(0, 10),
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from(PRESENCES),
            st.integers(0, 1000),
        ),
        min_size=1,
        max_size=25,
    ),
    queue_id=st.sampled_from(["billing", "spanish", "general"]),
    step=st.integers(0, 2),
    channel=st.sampled_from(CHANNELS),
    declined=st.sets(st.integers(0, 24), max_size=5),
)
def test_indexed_selection_equals_a_full_scan(
    agents: list[tuple[int, int, int, int, Presence, int]],
    queue_id: str,
    step: int,
    channel: Channel,
    declined: set[int],
) -> None:
    clock = FakeClock()
    engine = RouterEngine(RULES, clock)
    for i, (billing, spanish, cap, _load, presence, idle) in enumerate(agents):
        skills = {k: v for k, v in (("billing", billing), ("spanish", spanish)) if v > 0}
        clock.set(FakeClock().now + timedelta(seconds=idle))
        engine.handle(agent_event(f"a{i}", skills=skills, capacity={channel: cap}, presence=presence))
    t = engine._tenants["acme"]
    for i, (_, _, cap, load, _, _) in enumerate(agents):
        agent = t.agents[f"a{i}"]
        agent.load[channel] = min(load, cap)
        t.index.update(agent)
    steps = t.requirements[queue_id]
    requirement = steps[min(step, len(steps) - 1)]
    queue = t.rules.queue(queue_id)
    assert queue is not None
    excluded = {f"a{i}" for i in declined}
    variables = lambda: {}  # noqa: E731
    indexed = select_agent(t.agents, t.index, channel, requirement, queue, excluded, variables)
    scanned = select_by_scan(t.agents.values(), channel, requirement, queue, excluded, variables)
    assert (indexed.agent.id if indexed.agent else None) == (scanned.id if scanned else None)
