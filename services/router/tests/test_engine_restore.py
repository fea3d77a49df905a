"""Restore pauses the garbage collector only while it runs, and restores timers of fresh state."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import ValidationError

from switchboard.common.events import Channel, ConversationResolved
from switchboard.router.engine import RouterEngine, UnknownTenant
from switchboard.router.rules import SlaTarget, parse_rules
from switchboard.router.snapshot import (
    AgentRecord,
    ContactRecord,
    ConversationRecord,
    decode_state,
    decode_states,
    encode_state,
)
from switchboard.router.state import (
    NO_CLOCKS,
    NO_IDS,
    RECENT_MESSAGE_IDS,
    ZERO,
    Conversation,
    ConversationStatus,
    SlaClock,
)
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = parse_rules("""
tenants:
  acme:
    queues:
      - id: general
        mode: offer
        offer_timeout: 30s
""")


def test_the_collector_is_back_on_after_restore_even_when_a_record_is_refused() -> None:
    source = RouterEngine(RULES, FakeClock())
    source.handle(agent_event("a1"))
    seen: list[bool] = []

    def records() -> Iterator[AgentRecord]:
        for record in source.snapshot():
            seen.append(gc.isenabled())
            yield decode_state(encode_state(record))  # type: ignore[misc]

    assert gc.isenabled()
    RouterEngine(RULES, FakeClock()).restore(records())
    assert seen == [False]
    assert gc.isenabled()
    with pytest.raises(UnknownTenant):
        RouterEngine(RULES, FakeClock()).restore([AgentRecord(tenant_id="nobody", id="a1")])
    assert gc.isenabled()


def test_restored_offers_keep_their_timeout_and_expire() -> None:
    clock = FakeClock()
    source = RouterEngine(RULES, clock)
    source.handle(agent_event("a1"))
    source.handle(inbound(handle="c1"))
    copy = RouterEngine(RULES, clock)
    copy.restore(decode_state(encode_state(r)) for r in source.snapshot())
    assert copy.next_deadline() == source.next_deadline() == clock.now.replace(second=30)
    clock.tick(30)
    assert [e.decision.value for e in copy.advance().log] == [e.decision.value for e in source.advance().log]


def test_decode_states_reads_many_records_with_the_collector_paused_only_meanwhile() -> None:
    engine = RouterEngine(RULES, FakeClock())
    engine.handle(agent_event("a1"))
    engine.handle(inbound(handle="c1"))
    records = engine.snapshot()
    assert decode_states(encode_state(r) for r in records) == records
    assert gc.isenabled()
    with pytest.raises(ValidationError):
        decode_states([b'{"kind": "agent"}'])
    assert gc.isenabled()


def test_every_conversation_field_survives_the_changelog() -> None:
    now = FakeClock().now
    conv = Conversation(
        id="c1",
        channel=Channel.CHAT,
        provider="p",
        contact_id="k1",
        opened_at=now,
        thread_key="chat:p:t",
        queue_id="general",
        route_rule="match: queue general",
        status=ConversationStatus.OFFERED,
        priority=3,
        enqueued_at=now + timedelta(seconds=1),
        step=1,
        agent_id="a1",
        offer_id="o1",
        offer_expires_at=now + timedelta(seconds=2),
        assigned_at=now + timedelta(seconds=3),
        declined_by=frozenset({"a2", "a3"}),
        last_agent_id="a4",
        agent_replied=True,
        subject="s",
        preview="hello",
        language="de",
        inbox="support",
        customer_name="Customer",
        message_ids=("p:m1", "p:m2"),
        sequence=7,
        sla_policy="std",
        clocks={SlaTarget.RESOLUTION: SlaClock(started_at=now, consumed=timedelta(seconds=5), running_since=None)},
        fired=frozenset({"resolution:0"}),
        breaches=("first_response",),
        resolved_at=now + timedelta(seconds=4),
    )
    record = decode_state(encode_state(ConversationRecord.of("acme", conv)))
    assert isinstance(record, ConversationRecord)
    assert record.to_conversation() == conv


def test_a_lazily_decoded_stream_is_applied_record_by_record_and_the_latest_version_wins() -> None:
    """Restore builds each entity as its record arrives (nothing holds every record), with
    the same result as keeping only the latest record per key."""
    clock = FakeClock()
    source = RouterEngine(RULES, clock)
    source.handle(agent_event("a1", capacity={"email": 1}))
    source.handle(inbound(handle="c1"))
    first = source.snapshot()
    clock.tick(5)
    source.handle(agent_event("a1", skills={"billing": 4}, capacity={"email": 3}))
    source.handle(inbound(handle="c2"))
    second = source.snapshot()
    old_contact = next(r for r in first if r.kind == "contact")

    def stream() -> Iterator[AgentRecord | ContactRecord | ConversationRecord]:
        for record in [*first, old_contact.model_copy(update={"handles": ("gone-handle",)}), *second]:
            yield decode_state(encode_state(record))

    copy = RouterEngine(RULES, clock)
    copy.restore(stream())
    assert copy.snapshot() == second
    assert copy._tenants["acme"].contacts.find(["gone-handle"]) == []  # a replaced version's handle is gone
    agent = copy.agent("acme", "a1")
    assert agent is not None
    assert agent.skills == {"billing": 4}
    assert agent.load == {Channel.EMAIL: 2}
    assert [c.id for c in copy.held_by("acme", "a1")] == [c.id for c in source.held_by("acme", "a1")]


def test_restored_conversations_share_repeated_values() -> None:
    engine = RouterEngine(RULES, FakeClock())
    engine.handle(agent_event("a1", capacity={"email": 5}))
    for n in range(3):
        engine.handle(inbound(handle=f"c{n}"))
    copy = RouterEngine(RULES, FakeClock())
    copy.restore(decode_states(encode_state(r) for r in engine.snapshot()))
    agent = copy.agent("acme", "a1")
    conversations = copy.held_by("acme", "a1")
    assert agent is not None
    assert len(conversations) == 3
    for conv in conversations:
        assert conv.agent_id is agent.id  # the agent's own string, not a decoded copy per conversation
        assert conv.queue_id is conversations[0].queue_id
        assert conv.provider is conversations[0].provider
        clock = conv.clocks[SlaTarget.FIRST_RESPONSE]  # opened, queued, offered, clocks started at once
        # held as one float (POSIX seconds), not a datetime per field
        held = (clock._running_since, clock._started_at, conv._opened_at, conv._enqueued_at)  # type: ignore[attr-defined]
        assert all(stamp is held[0] for stamp in held)
        assert isinstance(held[0], float)
        assert clock.running_since == clock.started_at == conv.opened_at == conv.enqueued_at
        assert conv.opened_at is not None
        assert clock.consumed is ZERO
        assert conv.breaches == ()
        assert conv.fired is NO_IDS
    resolved = conversations[0].id
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=resolved))
    again = RouterEngine(RULES, FakeClock())
    again.restore(decode_states(encode_state(r) for r in engine.snapshot()))
    conv = again.conversation("acme", resolved)
    assert conv is not None
    assert conv.clocks is NO_CLOCKS


def test_conversation_changes_never_touch_the_shared_empty_values() -> None:
    now = FakeClock().now
    a = Conversation(id="a", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=now)
    b = Conversation(id="b", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=now)
    assert a.clocks is b.clocks is NO_CLOCKS
    clock = SlaClock(started_at=now, running_since=now)
    a.set_clock(SlaTarget.FIRST_RESPONSE, clock)
    a.set_clock(SlaTarget.RESOLUTION, clock)
    assert dict(a.clocks) == {SlaTarget.FIRST_RESPONSE: clock, SlaTarget.RESOLUTION: clock}
    assert b.clocks == {}
    assert len(NO_CLOCKS) == 0
    a.drop_clock(SlaTarget.FIRST_RESPONSE)
    a.drop_clock(SlaTarget.NEXT_RESPONSE)  # not running: nothing happens
    assert dict(a.clocks) == {SlaTarget.RESOLUTION: clock}
    a.drop_clock(SlaTarget.RESOLUTION)
    assert a.clocks is NO_CLOCKS
    a.set_clock(SlaTarget.RESOLUTION, clock)
    a.clear_clocks()
    assert a.clocks is NO_CLOCKS
    a.add_breach("first_response")
    assert (a.breaches, b.breaches) == (("first_response",), ())
    for n in range(RECENT_MESSAGE_IDS + 3):
        a.remember_message(f"m{n}")
    assert a.message_ids == tuple(f"m{n}" for n in range(3, RECENT_MESSAGE_IDS + 3))
    assert b.message_ids == ()


def test_equal_clocks_are_one_object_and_a_changed_clock_is_a_new_one() -> None:
    now = FakeClock().now
    conv = Conversation(id="a", channel=Channel.EMAIL, provider="p", contact_id="k", opened_at=now)
    conv.set_clock(SlaTarget.FIRST_RESPONSE, SlaClock(started_at=now, running_since=now))
    conv.set_clock(SlaTarget.RESOLUTION, SlaClock(started_at=now, running_since=now))
    first, resolution = conv.clocks[SlaTarget.FIRST_RESPONSE], conv.clocks[SlaTarget.RESOLUTION]
    assert first is resolution  # equal clocks started together: one object
    assert list(conv.clocks) == [t for t in SlaTarget if t in (SlaTarget.FIRST_RESPONSE, SlaTarget.RESOLUTION)]
    assert SlaTarget.NEXT_RESPONSE not in conv.clocks
    assert conv.clocks.get(SlaTarget.NEXT_RESPONSE) is None
    with pytest.raises(KeyError):
        conv.clocks[SlaTarget.NEXT_RESPONSE]
    paused = SlaClock(started_at=now, consumed=timedelta(minutes=5), running_since=None)
    conv.set_clock(SlaTarget.FIRST_RESPONSE, paused)
    assert conv.clocks[SlaTarget.FIRST_RESPONSE] is paused
    assert conv.clocks[SlaTarget.RESOLUTION] is resolution  # the other clock did not move
    assert resolution.running_since == now
    assert resolution.consumed == ZERO
    with pytest.raises(AttributeError):
        resolution.consumed = timedelta(1)  # type: ignore[misc]  # frozen: shared clocks never change
