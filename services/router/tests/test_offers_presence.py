"""Offers (accept, decline, timeout), presence changes and event-driven re-routing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from switchboard.common.events import (
    AgentRemoved,
    Channel,
    DeliveryEndpoint,
    DeliveryResult,
    DeliveryStatus,
    DispatchKind,
    EndpointKind,
    OfferAccepted,
    OfferDeclined,
    Presence,
    PresenceChanged,
    ReplySent,
    RoutingDecision,
)
from switchboard.router.engine import Effects, RouterEngine, UnknownAgent, UnknownTenant
from switchboard.router.rules import parse_rules
from switchboard.router.state import ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
options: {sticky_window: 0s, offline_grace: 5m}
tenants:
  acme:
    queues:
      - id: offers
        mode: offer
        offer_timeout: 30s
        skills: {support: 1}
        strategy: highest_proficiency
"""


def setup(rules: str = RULES) -> tuple[RouterEngine, FakeClock]:
    clock = FakeClock()
    return RouterEngine(parse_rules(rules), clock), clock


def kinds(fx: Effects) -> list[tuple[DispatchKind, str | None]]:
    return [(d.kind, d.agent_id) for d in fx.dispatches]


def three_agents(engine: RouterEngine) -> None:
    engine.handle(agent_event("best", skills={"support": 9}))
    engine.handle(agent_event("good", skills={"support": 6}))
    engine.handle(agent_event("ok", skills={"support": 3}))


def test_offer_then_accept() -> None:
    engine, clock = setup()
    three_agents(engine)
    fx = engine.handle(inbound())
    assert kinds(fx) == [(DispatchKind.OFFER, "best")]
    offer = fx.dispatches[0]
    assert offer.offer_expires_at == clock.now + timedelta(seconds=30)
    conv_id = offer.conversation.conversation_id
    assert fx.log[-1].decision is RoutingDecision.OFFERED
    clock.tick(10)
    fx = engine.handle(
        OfferAccepted(tenant_id="acme", agent_id="best", conversation_id=conv_id, offer_id=offer.offer_id)
    )
    assert [e.decision for e in fx.log] == [RoutingDecision.ASSIGNED]
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.status is ConversationStatus.ASSIGNED
    assert conv.agent_id == "best"
    clock.tick(60)
    assert not engine.advance()  # the offer timer was cancelled


def test_decline_goes_to_the_next_agent_and_never_back() -> None:
    engine, clock = setup()
    three_agents(engine)
    conv_id = engine.handle(inbound()).dispatches[0].conversation.conversation_id
    fx = engine.handle(OfferDeclined(tenant_id="acme", agent_id="best", conversation_id=conv_id, reason="busy"))
    assert kinds(fx) == [(DispatchKind.OFFER, "good")]
    assert [e.decision for e in fx.log] == [RoutingDecision.REROUTED, RoutingDecision.OFFERED]
    assert "offer declined: busy" in fx.log[0].reason
    assert any(c.agent_id == "best" and "declined" in c.reason for c in fx.log[1].candidates)
    clock.tick(30)
    fx = engine.advance()  # good times out
    assert kinds(fx) == [(DispatchKind.OFFER_WITHDRAWN, "good"), (DispatchKind.OFFER, "ok")]
    assert fx.log[0].reason == "offer timed out"
    fx = engine.handle(OfferDeclined(tenant_id="acme", agent_id="ok", conversation_id=conv_id))
    assert kinds(fx) == []
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.status is ConversationStatus.QUEUED
    assert conv.declined_by == {"best", "good", "ok"}
    # a new agent arriving takes it at once
    fx = engine.handle(agent_event("new", skills={"support": 1}))
    assert kinds(fx) == [(DispatchKind.OFFER, "new")]


def test_stale_accept_and_decline_are_logged_not_applied() -> None:
    engine, clock = setup()
    three_agents(engine)
    conv_id = engine.handle(inbound()).dispatches[0].conversation.conversation_id
    fx = engine.handle(OfferAccepted(tenant_id="acme", agent_id="good", conversation_id=conv_id))
    assert [e.decision for e in fx.log] == [RoutingDecision.IGNORED]
    fx = engine.handle(OfferAccepted(tenant_id="acme", agent_id="best", conversation_id=conv_id, offer_id="old"))
    assert [e.decision for e in fx.log] == [RoutingDecision.IGNORED]
    fx = engine.handle(OfferDeclined(tenant_id="acme", agent_id="best", conversation_id="nope"))
    assert fx.log[0].decision is RoutingDecision.IGNORED
    assert fx.log[0].conversation_id == "nope"
    clock.tick(31)
    fx = engine.handle(OfferAccepted(tenant_id="acme", agent_id="best", conversation_id=conv_id))
    # the expiry fires first (timers run before the event), so the late accept is ignored
    assert [e.decision for e in fx.log] == [RoutingDecision.REROUTED, RoutingDecision.OFFERED, RoutingDecision.IGNORED]


def test_reply_from_the_offered_agent_counts_as_acceptance() -> None:
    engine, _ = setup()
    three_agents(engine)
    conv_id = engine.handle(inbound()).dispatches[0].conversation.conversation_id
    engine.handle(ReplySent(tenant_id="acme", agent_id="best", conversation_id=conv_id))
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.status is ConversationStatus.WAITING_FOR_CUSTOMER
    assert conv.agent_id == "best"


def test_offline_withdraws_offers_at_once_and_returns_work_after_grace() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"support": 5}, capacity={"email": 3}))
    first = engine.handle(inbound(handle="c1")).dispatches[0]
    engine.handle(OfferAccepted(tenant_id="acme", agent_id="a1", conversation_id=first.conversation.conversation_id))
    second = engine.handle(inbound(handle="c2")).dispatches[0]
    assert second.kind is DispatchKind.OFFER
    engine.handle(agent_event("a2", skills={"support": 1}, capacity={"email": 3}, presence=Presence.AWAY))
    clock.tick(5)
    fx = engine.handle(PresenceChanged(tenant_id="acme", agent_id="a1", presence=Presence.OFFLINE))
    assert kinds(fx) == [(DispatchKind.OFFER_WITHDRAWN, "a1")]
    assert fx.dispatches[0].offer_id == second.offer_id
    assert fx.log[0].decision is RoutingDecision.WITHDRAWN
    held = engine.conversation("acme", first.conversation.conversation_id)
    assert held is not None
    assert held.agent_id == "a1"  # assigned work stays during the grace period
    engine.handle(PresenceChanged(tenant_id="acme", agent_id="a2", presence=Presence.AVAILABLE))
    clock.tick(minutes=4)
    assert not [e for e in engine.advance().log if e.conversation_id == held.id]
    clock.tick(minutes=1)
    fx = engine.advance()
    assert held.agent_id is not None
    assert held.agent_id == "a2"
    assert [e.decision for e in fx.log if e.conversation_id == held.id] == [
        RoutingDecision.REROUTED,
        RoutingDecision.OFFERED,
    ]


def test_coming_back_within_grace_keeps_the_work() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"support": 5}))
    conv_id = engine.handle(inbound()).dispatches[0].conversation.conversation_id
    engine.handle(OfferAccepted(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    engine.handle(PresenceChanged(tenant_id="acme", agent_id="a1", presence=Presence.OFFLINE))
    clock.tick(minutes=3)
    engine.handle(PresenceChanged(tenant_id="acme", agent_id="a1", presence=Presence.AVAILABLE))
    clock.tick(minutes=10)
    assert not engine.advance()
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.agent_id == "a1"


def test_available_agent_and_skill_gain_trigger_immediate_assignment() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", skills={"billing": 5}))
    fx = engine.handle(inbound())
    assert kinds(fx) == []
    fx = engine.handle(agent_event("a1", skills={"billing": 5, "support": 2}))
    assert kinds(fx) == [(DispatchKind.OFFER, "a1")]
    engine.handle(agent_event("a2", skills={"support": 2}, presence=Presence.BUSY))
    engine.handle(inbound(handle="c2"))
    engine.handle(inbound(handle="c3"))  # a1 full (email capacity 2): c3 waits
    fx = engine.handle(PresenceChanged(tenant_id="acme", agent_id="a2", presence=Presence.AVAILABLE))
    assert kinds(fx) == [(DispatchKind.OFFER, "a2")]


def test_removed_agent_loses_offers_and_work() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", skills={"support": 5}))
    engine.handle(agent_event("a2", skills={"support": 1}))
    conv_id = engine.handle(inbound()).dispatches[0].conversation.conversation_id
    fx = engine.handle(AgentRemoved(tenant_id="acme", agent_id="a1"))
    assert kinds(fx) == [(DispatchKind.OFFER_WITHDRAWN, "a1"), (DispatchKind.OFFER, "a2")]
    assert fx.state["acme/agent/a1"] is None
    assert engine.agent("acme", "a1") is None
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.agent_id == "a2"


def test_failed_offer_delivery_reroutes() -> None:
    engine, _ = setup()
    three_agents(engine)
    offer = engine.handle(inbound()).dispatches[0]
    fx = engine.handle(
        DeliveryResult(
            tenant_id="acme",
            dispatch_id=offer.dispatch_id,
            dispatch_kind=DispatchKind.OFFER,
            conversation_id=offer.conversation.conversation_id,
            agent_id="best",
            endpoint=DeliveryEndpoint(kind=EndpointKind.SLACK, target="U1"),
            status=DeliveryStatus.FAILED,
            error="channel_not_found",
        )
    )
    assert kinds(fx) == [(DispatchKind.OFFER, "good")]
    assert "delivery of offer failed: channel_not_found" in fx.log[0].reason


def test_unknown_tenant_and_agent_are_errors() -> None:
    engine, _ = setup()
    with pytest.raises(UnknownTenant, match="globex"):
        engine.handle(inbound(tenant="globex"))
    with pytest.raises(UnknownAgent, match="ghost"):
        engine.handle(PresenceChanged(tenant_id="acme", agent_id="ghost", presence=Presence.AVAILABLE))


def test_capacity_counts_offers() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1", skills={"support": 5}, capacity={"chat": 1}))
    assert kinds(engine.handle(inbound(channel="chat", handle="c1"))) == [(DispatchKind.OFFER, "a1")]
    assert kinds(engine.handle(inbound(channel="chat", handle="c2"))) == []
    agent = engine.agent("acme", "a1")
    assert agent is not None
    assert agent.load == {Channel.CHAT: 1}
