"""New rules take effect at once: queued conversations are re-evaluated under them."""

from __future__ import annotations

from switchboard.common.events import DispatchKind, RoutingDecision
from switchboard.router.engine import RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.testing import FakeClock, agent_event, inbound

OLD = """
tenants:
  acme:
    queues:
      - id: general
        skills: {expert: 8}
"""

NEW = """
tenants:
  acme:
    queues:
      - id: refunds
        match: {keywords: [refund]}
        skills: {billing: 1}
      - id: general
        skills: {expert: 2}
"""


def test_queued_conversations_are_rematched_and_routed_under_new_rules() -> None:
    clock = FakeClock()
    engine = RouterEngine(parse_rules(OLD), clock)
    engine.handle(agent_event("junior", skills={"expert": 3}))
    engine.handle(agent_event("cashier", skills={"billing": 1}))
    general = engine.handle(inbound(handle="c1", text="hello")).log[-1].conversation_id
    clock.tick(1)
    refund = engine.handle(inbound(handle="c2", text="refund please")).log[-1].conversation_id
    assert [c.id for c in engine.waiting("acme", "general")] == [general, refund]
    fx = engine.replace_rules(parse_rules(NEW))
    assigned = {d.conversation.conversation_id: d.agent_id for d in fx.dispatches if d.kind is DispatchKind.ASSIGNMENT}
    assert assigned == {general: "junior", refund: "cashier"}
    assert {e.decision for e in fx.log} == {RoutingDecision.ASSIGNED}
    conv = engine.conversation("acme", refund)
    assert conv is not None
    assert conv.queue_id == "refunds"
    assert fx.state  # the changed conversations and agents go to the changelog
    assert engine.waiting("acme", "general") == []
