"""Restore pauses the garbage collector only while it runs, and restores timers of fresh state."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import ValidationError

from switchboard.common.events import Channel
from switchboard.router.engine import RouterEngine, UnknownTenant
from switchboard.router.rules import SlaTarget, parse_rules
from switchboard.router.snapshot import AgentRecord, ConversationRecord, decode_state, decode_states, encode_state
from switchboard.router.state import Conversation, ConversationStatus, SlaClock
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
        message_ids=["p:m1", "p:m2"],
        sequence=7,
        sla_policy="std",
        clocks={SlaTarget.RESOLUTION: SlaClock(started_at=now, consumed=timedelta(seconds=5), running_since=None)},
        fired=frozenset({"resolution:0"}),
        breaches=["first_response"],
        resolved_at=now + timedelta(seconds=4),
    )
    record = decode_state(encode_state(ConversationRecord.of("acme", conv)))
    assert isinstance(record, ConversationRecord)
    assert record.to_conversation() == conv
