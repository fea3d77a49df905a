"""Changelog records round-trip through JSON and rebuild the engine, pending timers included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from switchboard.common.events import DispatchKind, OfferDeclined, Presence, PresenceChanged, RoutingDecision
from switchboard.router import snapshot
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.snapshot import ConversationRecord, StateEntity, decode_state, encode_entity, encode_state
from switchboard.router.state import PREVIEW_CHARS
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
options: {sticky_window: 1h, offline_grace: 5m}
tenants:
  acme:
    sla_policies:
      std:
        first_response: 1h
        escalations:
          - {name: warn, target: first_response, at: 50%, action: warn_agent}
    queues:
      - id: offers
        match: {channels: [chat]}
        mode: offer
        offer_timeout: 30s
        sla_policy: std
      - id: push
        skills: {billing: 3}
        sla_policy: std
        relaxation:
          - {after: 10m, drop_skills: [billing]}
"""


class Changelog:
    """What the service would keep in the compacted topic: the latest record per key."""

    def __init__(self) -> None:
        self.records: dict[str, bytes | None] = {}

    def write(self, fx: Effects) -> Effects:
        for key, record in fx.records().items():
            self.records[key] = encode_state(record) if record is not None else None
        return fx

    def restore_into(self, engine: RouterEngine) -> None:
        engine.restore(decode_state(raw) for raw in self.records.values() if raw is not None)


def test_state_survives_a_restart_and_timers_still_fire() -> None:
    clock = FakeClock()
    rules = parse_rules(RULES)
    log = Changelog()
    engine = RouterEngine(rules, clock)
    log.write(engine.handle(agent_event("a1", capacity={"chat": 2, "email": 2})))
    log.write(engine.handle(agent_event("a2", capacity={"chat": 2, "email": 2})))
    offer = log.write(engine.handle(inbound(channel="chat", handle="c1", text="x" * 5000)))
    offered = offer.dispatches[0]
    assert offered.kind is DispatchKind.OFFER
    waiting = log.write(engine.handle(inbound(handle="c2", thread="t2", message_id="m-2")))
    waiting_id = waiting.log[-1].conversation_id
    assert waiting.log[-1].decision is RoutingDecision.QUEUED
    log.write(engine.handle(PresenceChanged(tenant_id="acme", agent_id="a2", presence=Presence.OFFLINE)))
    clock.tick(10)

    # crash: a new engine rebuilt only from the changelog
    restored = RouterEngine(rules, clock)
    log.restore_into(restored)
    assert sorted(r.key() for r in restored.snapshot()) == sorted(k for k, v in log.records.items() if v)
    for before, after in zip(
        sorted(engine.snapshot(), key=lambda r: r.key()),
        sorted(restored.snapshot(), key=lambda r: r.key()),
        strict=True,
    ):
        assert before == after
    a1 = restored.agent("acme", "a1")
    assert a1 is not None
    assert sum(a1.load.values()) == 1  # load is recomputed from the held conversation
    conv = restored.conversation("acme", offered.conversation.conversation_id)
    assert conv is not None
    assert len(conv.preview) == PREVIEW_CHARS
    # a duplicate of an inbound seen before the crash is still recognised
    dup = restored.handle(inbound(handle="c2", thread="t2", message_id="m-2"))
    assert dup.log[0].decision is RoutingDecision.IGNORED
    # the pending offer times out on schedule, and the conversation goes nowhere else (a2 offline)
    assert restored.next_deadline() == offered.offer_expires_at
    clock.set(offered.offer_expires_at)  # type: ignore[arg-type]
    fx = restored.advance()
    assert [(d.kind, d.agent_id) for d in fx.dispatches] == [(DispatchKind.OFFER_WITHDRAWN, "a1")]
    # the relaxation timer of the waiting conversation fires after 10 minutes and assigns it
    clock.set(waiting.log[-1].created_at + timedelta(minutes=10))
    fx = restored.advance()
    assigned = [d for d in fx.dispatches if d.kind is DispatchKind.ASSIGNMENT]
    assert [(d.conversation.conversation_id, d.agent_id) for d in assigned] == [(waiting_id, "a1")]


def test_declined_by_and_sla_progress_survive_a_restart() -> None:
    clock = FakeClock()
    rules = parse_rules(RULES)
    log = Changelog()
    engine = RouterEngine(rules, clock)
    log.write(engine.handle(agent_event("a1")))
    log.write(engine.handle(agent_event("a2")))
    offer = log.write(engine.handle(inbound(channel="chat")))
    conv_id = offer.log[-1].conversation_id
    first = offer.dispatches[0].agent_id
    assert first is not None
    declined = log.write(engine.handle(OfferDeclined(tenant_id="acme", agent_id=first, conversation_id=conv_id)))
    second = declined.dispatches[0].agent_id
    clock.tick(minutes=29)
    restored = RouterEngine(rules, clock)
    log.restore_into(restored)
    clock.tick(minutes=1)
    fx = restored.advance()
    # the second offer expired long ago, so it is withdrawn, and it never goes back to the first agent
    assert [(d.kind, d.agent_id) for d in fx.dispatches] == [(DispatchKind.OFFER_WITHDRAWN, second)]
    conv = restored.conversation("acme", conv_id)
    assert conv is not None
    assert conv.declined_by == {first, second}
    assert [e.decision for e in fx.log][-1] is RoutingDecision.ESCALATED  # warn at 30 minutes, no assignee


def test_records_are_small_and_json() -> None:
    clock = FakeClock()
    engine = RouterEngine(parse_rules(RULES), clock)
    engine.handle(inbound(text="body " * 2000))
    records = engine.snapshot()
    conv = next(r for r in records if isinstance(r, ConversationRecord))
    raw = encode_state(conv)
    assert b'"schema":"router-state/v1"' in raw
    assert len(raw) < 2000
    assert decode_state(raw) == conv


def test_the_changelog_bytes_without_the_model_equal_the_model_s() -> None:
    """:func:`encode_entity` writes conversations and contacts without building their record:
    the bytes must be the model's, odd characters, paused clocks, offers and all; what it
    does not write itself (a time not in UTC, contact attributes, agents) goes through the model."""
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, 0, 120000, tzinfo=UTC))
    engine = RouterEngine(parse_rules(RULES), clock)
    engine.handle(agent_event("a1", capacity={"chat": 1, "email": 2}))
    odd = 'quote " backslash \\ nul \x00 del \x7f é € 😀 \u2028 end'
    offered = engine.handle(inbound(channel="chat", handle="c1", text=odd, subject=odd))
    conv_id = offered.log[-1].conversation_id
    engine.handle(OfferDeclined(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    clock.tick(seconds=1.5)
    engine.handle(inbound(handle="c2", thread="t2", attributes={"tier": "gold", "n": [1, 2.5, None]}))
    clock.tick(minutes=31)
    engine.advance()  # escalations fire, clocks move on
    states = {r.key(): r for r in engine.snapshot()}
    assert any(isinstance(r, ConversationRecord) and r.declined_by and r.fired for r in states.values())
    t = engine._tenants["acme"]
    entities: list[StateEntity] = [*t.agents.values(), *t.contacts.contacts.values(), *t.conversations.values()]
    for entity in entities:
        key = next(k for k, r in states.items() if r.id == entity.id)
        assert encode_entity(key, entity) == encode_state(states[key])
    # (and the conversations, and the contact without attributes, were written without it)
    assert all(snapshot._conversation_json("acme", c) is not None for c in t.conversations.values())
    assert sum(snapshot._contact_json("acme", c) is not None for c in t.contacts.contacts.values()) == 1
    # a time in another zone (equal instant) is left to the model, which writes it its way
    conv = t.conversations[conv_id]
    conv.opened_at = conv.opened_at.astimezone(timezone(timedelta(hours=2)))
    key = f"acme/conversation/{conv_id}"
    assert encode_entity(key, conv) == encode_state(ConversationRecord.of("acme", conv))
    assert b"+02:00" in (encode_entity(key, conv) or b"")
    # so is a value orjson does not write
    conv.priority = 2**70
    assert encode_entity(key, conv) == encode_state(ConversationRecord.of("acme", conv))
    assert encode_entity(key, None) is None
