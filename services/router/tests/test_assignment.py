"""Selection through the engine: strategies, capacity, priority order, relaxation, stickiness."""

from __future__ import annotations

from datetime import timedelta

from switchboard.common.events import (
    Channel,
    ConversationResolved,
    DispatchKind,
    Presence,
    PresenceChanged,
    RoutingDecision,
)
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.state import ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
options: {sticky_window: 1h, reopen_window: 1d, offline_grace: 5m}
tenants:
  acme:
    default_queue: general
    queues:
      - id: vip
        priority: 50
        match: {attributes: {tier: gold}}
        skills: {support: 1}
        strategy: highest_proficiency
      - id: billing
        priority: 10
        match: {keywords: [invoice]}
        skills: {billing: 4}
        strategy: least_loaded
        relaxation:
          - {name: lower, after: 5m, lower_skills: {billing: 1}}
          - {name: wide, after: 10m, widen_to: [spanish]}
      - id: spanish
        match: {languages: [es]}
        skills: {spanish: 5}
        strategy: longest_idle
      - id: filtered
        match: {keywords: [emea]}
        agent_filter: '"emea" in agent.attributes.regions'
      - id: general
        strategy: least_loaded
"""


def setup(rules: str = RULES) -> tuple[RouterEngine, FakeClock]:
    clock = FakeClock()
    return RouterEngine(parse_rules(rules), clock), clock


def assigned_to(fx: Effects) -> list[str | None]:
    return [d.agent_id for d in fx.dispatches if d.kind is DispatchKind.ASSIGNMENT]


def decisions(fx: Effects) -> list[RoutingDecision]:
    return [e.decision for e in fx.log]


def test_least_loaded_picks_the_agent_with_fewest_conversations_on_the_channel() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", capacity={"email": 3}))
    engine.handle(agent_event("a2", capacity={"email": 3}))
    first = engine.handle(inbound(handle="c1"))
    clock.tick(1)
    second = engine.handle(inbound(handle="c2"))
    clock.tick(1)
    third = engine.handle(inbound(handle="c3"))
    # a1 and a2 tie on load 0: a1 wins on idle time (both idle since upsert, a1 first)
    assert assigned_to(first) == ["a1"]
    assert assigned_to(second) == ["a2"]
    assert assigned_to(third) == ["a1"]
    entry = first.log[-1]
    assert entry.decision is RoutingDecision.ASSIGNED
    assert entry.queue_id == "general"
    assert entry.candidates[0].agent_id == "a1"
    assert entry.candidates[0].eligible
    assert "least loaded" in entry.reason


def test_longest_idle_picks_the_agent_idle_the_longest() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"spanish": 5}))
    clock.tick(10)
    engine.handle(agent_event("a2", skills={"spanish": 9}))
    clock.tick(10)
    fx = engine.handle(inbound(handle="c1", language="es"))
    assert assigned_to(fx) == ["a1"]
    clock.tick(10)
    fx = engine.handle(inbound(handle="c2", language="es"))
    assert assigned_to(fx) == ["a2"]
    clock.tick(10)
    fx = engine.handle(inbound(handle="c3", language="es"))
    assert assigned_to(fx) == ["a1"]  # a1's last assignment is older than a2's


def test_highest_proficiency_picks_the_best_skilled() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", skills={"support": 3}))
    engine.handle(agent_event("a2", skills={"support": 8}))
    engine.handle(agent_event("a3", skills={"support": 5}))
    fx = engine.handle(inbound(handle="c1", attributes={"tier": "gold"}))
    assert assigned_to(fx) == ["a2"]
    assert fx.log[-1].queue_id == "vip"
    fx = engine.handle(inbound(handle="c2", attributes={"tier": "gold"}))
    assert assigned_to(fx) == ["a2"]  # still the most proficient with room
    fx = engine.handle(inbound(handle="c3", attributes={"tier": "gold"}))
    assert assigned_to(fx) == ["a3"]  # a2 is full on email (capacity 2)


def test_skill_levels_are_minimums() -> None:
    engine, _ = setup()
    engine.handle(agent_event("low", skills={"billing": 3}))
    engine.handle(agent_event("none"))
    fx = engine.handle(inbound(text="my invoice is wrong"))
    assert assigned_to(fx) == []
    assert decisions(fx) == [RoutingDecision.QUEUED]
    reasons = {c.agent_id: c.reason for c in fx.log[0].candidates}
    assert reasons == {"low": "skill billing 3 below 4"}


def test_capacity_is_per_channel() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", capacity={"chat": 1, "email": 1}))
    assert assigned_to(engine.handle(inbound(channel="chat", handle="c1"))) == ["a1"]
    fx = engine.handle(inbound(channel="chat", handle="c2"))
    assert assigned_to(fx) == []
    assert decisions(fx) == [RoutingDecision.QUEUED]
    assert assigned_to(engine.handle(inbound(channel="email", handle="c3"))) == ["a1"]
    agent = engine.agent("acme", "a1")
    assert agent is not None
    assert agent.load == {Channel.CHAT: 1, Channel.EMAIL: 1}
    assert assigned_to(engine.handle(inbound(channel="sms", handle="c4"))) == []  # no sms capacity


def test_freed_capacity_serves_waiting_work_by_priority_then_age() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"billing": 5, "support": 5}, capacity={"email": 1}))
    first = engine.handle(inbound(handle="c0"))
    busy_conv = first.log[-1].conversation_id
    clock.tick(1)
    old_general = engine.handle(inbound(handle="c1")).log[-1].conversation_id
    clock.tick(1)
    billing = engine.handle(inbound(handle="c2", text="invoice")).log[-1].conversation_id
    clock.tick(1)
    vip = engine.handle(inbound(handle="c3", attributes={"tier": "gold"})).log[-1].conversation_id
    clock.tick(1)
    new_general = engine.handle(inbound(handle="c4")).log[-1].conversation_id
    assert [c.id for c in engine.waiting("acme", "general")] == [old_general, new_general]
    order = []
    current = busy_conv
    for _ in range(4):
        fx = engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=current))
        assert assigned_to(fx) == ["a1"]
        current = fx.dispatches[0].conversation.conversation_id
        order.append(current)
    assert order == [vip, billing, old_general, new_general]


def test_relaxation_lowers_skills_then_widens_over_time() -> None:
    engine, clock = setup()
    engine.handle(agent_event("novice", skills={"billing": 1}))
    engine.handle(agent_event("hablante", skills={"spanish": 6}))
    fx = engine.handle(inbound(handle="c1", text="invoice"))
    assert decisions(fx) == [RoutingDecision.QUEUED]
    engine.handle(PresenceChanged(tenant_id="acme", agent_id="novice", presence=Presence.AWAY))
    assert engine.next_deadline() == clock.now + timedelta(minutes=5)
    clock.tick(minutes=5)
    fx = engine.advance()
    assert decisions(fx) == [RoutingDecision.RELAXED, RoutingDecision.QUEUED]
    assert fx.log[0].step == "lower"
    assert "billing>=1" in fx.log[0].reason
    clock.tick(minutes=5)
    fx = engine.advance()
    assert decisions(fx) == [RoutingDecision.RELAXED, RoutingDecision.ASSIGNED]
    assert assigned_to(fx) == ["hablante"]
    assert "widened to queue spanish" in fx.log[-1].reason
    assert fx.log[-1].step == "wide"


def test_relaxation_assigns_at_once_when_a_matching_agent_is_free() -> None:
    engine, clock = setup()
    engine.handle(agent_event("novice", skills={"billing": 2}))
    engine.handle(inbound(handle="c1", text="invoice"))
    clock.tick(minutes=4, seconds=59)
    assert not engine.advance()
    clock.tick(1)
    fx = engine.advance()
    assert assigned_to(fx) == ["novice"]


def test_sticky_routing_prefers_the_last_agent_within_the_window() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1"))
    engine.handle(agent_event("a2"))
    fx = engine.handle(inbound(handle="loyal"))
    assert assigned_to(fx) == ["a1"]
    conv = fx.log[-1].conversation_id
    clock.tick(1)
    assert assigned_to(engine.handle(inbound(handle="other-1"))) == ["a2"]
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=conv))
    clock.tick(1)
    assert assigned_to(engine.handle(inbound(handle="other-2"))) == ["a1"]
    clock.tick(minutes=30)
    # both hold one conversation and a2 has been idle longer: the strategy alone would pick a2
    fx = engine.handle(inbound(handle="loyal", subject="new question"))
    assert assigned_to(fx) == ["a1"]
    assert fx.log[-1].reason == "sticky: the contact's last agent"


def test_sticky_agent_must_be_eligible_and_window_expires() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1"))
    engine.handle(agent_event("a2"))
    conv = engine.handle(inbound(handle="loyal")).log[-1].conversation_id
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=conv))
    engine.handle(PresenceChanged(tenant_id="acme", agent_id="a1", presence=Presence.AWAY))
    fx = engine.handle(inbound(handle="loyal", subject="again"))
    assert assigned_to(fx) == ["a2"]
    assert any("sticky agent not eligible: presence away" in c.reason for c in fx.log[-1].candidates)
    engine.handle(PresenceChanged(tenant_id="acme", agent_id="a1", presence=Presence.AVAILABLE))
    clock.tick(hours=2)  # beyond the 1h sticky window; a2 is now the last agent but has load 1
    fx = engine.handle(inbound(handle="loyal", subject="third"))
    assert assigned_to(fx) == ["a1"]
    assert "least loaded" in fx.log[-1].reason


def test_agent_filter_is_applied_after_the_index() -> None:
    engine, _ = setup()
    engine.handle(agent_event("us", attributes={"regions": ["us"]}))
    engine.handle(agent_event("eu", attributes={"regions": ["emea", "apac"]}))
    engine.handle(agent_event("broken"))  # no regions attribute: the filter errors, so not eligible
    fx = engine.handle(inbound(text="emea customer"))
    assert assigned_to(fx) == ["eu"]
    reasons = {c.agent_id: c.reason for c in fx.log[-1].candidates}
    assert reasons["broken"].startswith("agent filter error")
    engine.handle(agent_event("eu", attributes={"regions": ["emea"]}, presence=Presence.AWAY))
    fx = engine.handle(inbound(handle="c2", text="emea again"))
    assert assigned_to(fx) == []
    reasons = {c.agent_id: c.reason for c in fx.log[-1].candidates}
    assert reasons["us"] == "agent filter rejected"


def test_agents_without_endpoints_or_not_available_are_not_chosen() -> None:
    engine, _ = setup()
    engine.handle(agent_event("mute", endpoints=0))
    engine.handle(agent_event("away", presence=Presence.AWAY))
    engine.handle(agent_event("off", presence=None))
    fx = engine.handle(inbound())
    assert assigned_to(fx) == []
    conv = engine.conversation("acme", fx.log[-1].conversation_id)
    assert conv is not None
    assert conv.status is ConversationStatus.QUEUED
