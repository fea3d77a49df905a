"""Read views of the engine for the HTTP API and the operator dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest

from switchboard.common.events import ConversationResolved, OfferAccepted, ReplySent
from switchboard.router.engine import Effects, RouterEngine, UnknownConversation, UnknownTenant
from switchboard.router.rules import parse_rules
from switchboard.router.state import ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound
from switchboard.router.views import QueueStats, SlaStatus

RULES = """
options: {sticky_window: 0s}
tenants:
  acme:
    default_queue: general
    sla_policies:
      std:
        first_response: 1h
        resolution: 4h
    queues:
      - id: vip
        match: {attributes: {tier: gold}}
        priority: 10
        skills: {vip: 1}
      - id: sales
        match: {keywords: [quote]}
        skills: {sales: 1}
        mode: offer
      - id: general
        skills: {support: 1}
        sla_policy: std
  other:
    queues:
      - id: only
"""


def setup() -> tuple[RouterEngine, FakeClock]:
    clock = FakeClock()
    return RouterEngine(parse_rules(RULES), clock), clock


def opened(fx: Effects) -> str:
    ids = [e.conversation_id for e in fx.log]
    assert ids, fx
    return ids[-1]


def stats(engine: RouterEngine, tenant: str = "acme") -> dict[str, QueueStats]:
    return {s.queue_id: s for s in engine.queue_stats(tenant)}


def test_queue_stats_count_waiting_offered_and_held_work_per_queue() -> None:
    engine, clock = setup()
    assert engine.queue_stats("acme") == [
        QueueStats(queue_id=q, depth=0, oldest_enqueued_at=None, offered=0, assigned=0)
        for q in ("vip", "sales", "general")
    ]
    first_queued = clock.now
    engine.handle(inbound(handle="c1", text="hello"))  # general, nobody to take it
    clock.tick(60)
    engine.handle(inbound(handle="c2", text="hello"))
    clock.tick(60)
    engine.handle(inbound(handle="c3", text="hello", attributes={"tier": "gold"}))  # vip waits
    clock.tick(60)
    s = stats(engine)
    assert (s["general"].depth, s["general"].oldest_enqueued_at) == (2, first_queued)
    assert (s["vip"].depth, s["vip"].oldest_enqueued_at) == (1, first_queued + timedelta(seconds=120))
    assert s["sales"].depth == 0

    engine.handle(agent_event("a1", skills={"support": 1}, capacity={"email": 1}))  # takes the oldest
    engine.handle(agent_event("s1", skills={"sales": 1}, capacity={"email": 5}))
    offer = opened(engine.handle(inbound(handle="c4", text="a quote please")))
    s = stats(engine)
    assert (s["general"].depth, s["general"].assigned, s["general"].offered) == (1, 1, 0)
    assert s["general"].oldest_enqueued_at == first_queued + timedelta(seconds=60)
    assert (s["sales"].depth, s["sales"].offered, s["sales"].assigned) == (0, 1, 0)

    engine.handle(OfferAccepted(tenant_id="acme", agent_id="s1", conversation_id=offer))
    engine.handle(ReplySent(tenant_id="acme", agent_id="s1", conversation_id=offer, waiting_for_customer=True))
    assert engine.conversation("acme", offer).status is ConversationStatus.WAITING_FOR_CUSTOMER  # type: ignore[union-attr]
    assert (stats(engine)["sales"].offered, stats(engine)["sales"].assigned) == (0, 1)

    engine.handle(ConversationResolved(tenant_id="acme", agent_id="s1", conversation_id=offer))
    assert (stats(engine)["sales"].offered, stats(engine)["sales"].assigned) == (0, 0)


def test_queue_stats_survive_restore_and_purge() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"support": 1}, capacity={"email": 1}))
    held = opened(engine.handle(inbound(handle="c1")))
    engine.handle(inbound(handle="c2"))
    before = engine.queue_stats("acme")
    assert stats(engine)["general"].depth == 1

    copy = RouterEngine(parse_rules(RULES), clock)
    copy.restore(engine.snapshot())
    assert copy.queue_stats("acme") == before

    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=held))
    clock.tick(days=4)  # past the reopen window: the resolved conversation is dropped
    engine.advance()
    assert engine.conversation("acme", held) is None
    general = stats(engine)["general"]
    assert (general.depth, general.assigned) == (0, 1)  # c2 went to a1 when c1 was resolved


def test_views_of_a_tenant_without_state_and_of_an_unknown_tenant() -> None:
    engine, _ = setup()
    assert [s.queue_id for s in engine.queue_stats("other")] == ["only"]
    assert engine.agents("other") == []
    assert engine.conversations("other") == []
    with pytest.raises(UnknownTenant):
        engine.queue_stats("nobody")
    with pytest.raises(UnknownTenant):
        engine.agents("nobody")
    with pytest.raises(UnknownTenant):
        engine.conversations("nobody")
    with pytest.raises(UnknownTenant):
        engine.sla_status("nobody", "c")


def test_agents_are_sorted_by_id() -> None:
    engine, _ = setup()
    for agent_id in ("zed", "amy", "kim"):
        engine.handle(agent_event(agent_id))
    assert [a.id for a in engine.agents("acme")] == ["amy", "kim", "zed"]


def test_conversations_newest_first_filtered_and_limited() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"support": 1}, capacity={"email": 1}))
    ids = []
    for n in range(4):
        ids.append(opened(engine.handle(inbound(handle=f"c{n}"))))
        clock.tick(10)
    assert [c.id for c in engine.conversations("acme")] == ids[::-1]
    assert [c.id for c in engine.conversations("acme", limit=2)] == ids[:1:-1]
    queued = engine.conversations("acme", statuses={ConversationStatus.QUEUED})
    assert [c.id for c in queued] == ids[:0:-1]
    assert [c.id for c in engine.conversations("acme", statuses=[ConversationStatus.ASSIGNED])] == ids[:1]
    assert engine.conversations("acme", statuses=()) == []
    assert engine.conversations("acme", limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        engine.conversations("acme", limit=-1)


def test_sla_status_running_paused_and_breached() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", skills={"support": 1}, capacity={"email": 1}))
    start = clock.now
    conv = opened(engine.handle(inbound(handle="c1")))
    running = {"policy": "std", "breached": False, "paused": False}
    assert engine.sla_status("acme", conv) == [
        SlaStatus(target="first_response", due_at=start + timedelta(hours=1), **running),  # type: ignore[arg-type]
        SlaStatus(target="resolution", due_at=start + timedelta(hours=4), **running),  # type: ignore[arg-type]
    ]
    clock.tick(hours=2)
    engine.advance()
    assert engine.sla_status("acme", conv)[0] == SlaStatus(
        target="first_response", policy="std", due_at=start + timedelta(hours=1), breached=True, paused=False
    )
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv, waiting_for_customer=True))
    assert engine.sla_status("acme", conv) == [
        SlaStatus(target="resolution", policy="std", due_at=None, breached=False, paused=True)
    ]

    no_policy = opened(engine.handle(inbound(handle="c2", text="a quote")))
    assert engine.sla_status("acme", no_policy) == []
    with pytest.raises(UnknownConversation):
        engine.sla_status("acme", "no-such-conversation")
