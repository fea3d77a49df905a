"""SLA clocks in business hours and escalation steps, fired in order from the timer heap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.common.events import (
    ConversationResolved,
    DispatchKind,
    OfferAccepted,
    ReplySent,
    RoutingDecision,
)
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.state import ConversationStatus
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
options: {sticky_window: 0s}
tenants:
  acme:
    calendars:
      office:
        timezone: Europe/Berlin
        hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
                thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
        holidays: [2026-12-25]
    sla_policies:
      std:
        calendar: office
        first_response: 1h
        next_response: 30m
        resolution: 4h
        escalations:
          - {name: warn, target: first_response, at: 50%, action: warn_agent}
          - {name: bump, target: first_response, at: 45m, action: raise_priority, raise_by: 5}
          - {name: sup, target: first_response, at: 100%, action: notify_supervisor,
             supervisor: {kind: slack, target: CSUP}}
          - {name: reassign, target: first_response, at: 100%, action: reassign}
          - {name: late, target: resolution, at: 100%, action: notify_supervisor,
             supervisor: {kind: webhook, target: "https://ops.example/hook"}}
      fast:
        first_response: 10m
        escalations:
          - {name: relax, target: first_response, at: 2m, action: relax}
          - {name: move, target: first_response, at: 5m, action: move_queue, to_queue: overflow}
    queues:
      - id: fast
        match: {channels: [chat]}
        skills: {expert: 9}
        sla_policy: fast
        relaxation:
          - {name: half, after: 1h, lower_skills: {expert: 5}}
      - id: support
        sla_policy: std
      - id: overflow
"""

BERLIN_MONDAY_1630 = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 16:30 in Berlin (UTC+1)


def setup(start: datetime = BERLIN_MONDAY_1630) -> tuple[RouterEngine, FakeClock]:
    clock = FakeClock(start)
    return RouterEngine(parse_rules(RULES), clock), clock


def run_until(engine: RouterEngine, clock: FakeClock, until: datetime) -> list[tuple[datetime, Effects]]:
    """Sleep from deadline to deadline as the service would, collecting what each wake-up did."""
    out = []
    while (deadline := engine.next_deadline()) is not None and deadline <= until:
        clock.set(deadline)
        out.append((deadline, engine.advance()))
    clock.set(until)
    return out


def test_escalation_steps_fire_in_order_at_business_times() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1", capacity={"email": 5}))
    engine.handle(agent_event("a2", capacity={"email": 5}))
    opened = engine.handle(inbound())
    conv_id = opened.log[-1].conversation_id
    assert opened.dispatches[0].conversation.sla_due_at == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    wakeups = run_until(engine, clock, datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    steps = [
        (when, e.decision, e.reason.split(":")[0] if e.decision is RoutingDecision.ESCALATED else e.reason)
        for when, fx in wakeups
        for e in fx.log
    ]
    monday_close = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 17:00 Berlin: 30 business minutes
    tuesday_0915 = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
    tuesday_0930 = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert steps[:6] == [
        (monday_close, RoutingDecision.ESCALATED, "first_response escalation warn"),
        (tuesday_0915, RoutingDecision.ESCALATED, "first_response escalation bump"),
        (tuesday_0930, RoutingDecision.SLA_BREACHED, "first_response target missed"),
        (tuesday_0930, RoutingDecision.ESCALATED, "first_response escalation sup"),
        (tuesday_0930, RoutingDecision.ESCALATED, "first_response escalation reassign"),
        (tuesday_0930, RoutingDecision.REROUTED, "SLA escalation reassign: reassigned"),
    ]
    dispatches = [(d.kind, d.agent_id) for _, fx in wakeups for d in fx.dispatches]
    assert dispatches[:3] == [
        (DispatchKind.SLA_WARNING, "a1"),
        (DispatchKind.ESCALATION, None),
        (DispatchKind.ASSIGNMENT, "a2"),
    ]
    warning = wakeups[0][1].dispatches[0]
    assert warning.escalation is not None
    assert warning.escalation.step == "warn"
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.priority == 5
    assert conv.breaches == ("first_response", "resolution")  # resolution: Tuesday 12:30 Berlin
    assert conv.agent_id == "a2"


def test_first_reply_stops_the_first_response_clock() -> None:
    engine, clock = setup()
    engine.handle(agent_event("a1"))
    conv_id = engine.handle(inbound(thread="t")).log[-1].conversation_id
    clock.tick(minutes=10)
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv_id, waiting_for_customer=False))
    wakeups = run_until(engine, clock, datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    assert not [e for _, fx in wakeups for e in fx.log if e.reason.startswith("first_response")]


def test_next_response_clock_starts_on_customer_message_after_a_reply() -> None:
    engine, clock = setup(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))  # Tuesday 10:00 Berlin
    engine.handle(agent_event("a1"))
    conv_id = engine.handle(inbound(thread="t")).log[-1].conversation_id
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    clock.tick(minutes=20)
    engine.handle(inbound(thread="t", text="still broken"))
    wakeups = run_until(engine, clock, datetime(2026, 11, 24, 11, 0, tzinfo=UTC))
    breaches = [(when, e.reason) for when, fx in wakeups for e in fx.log if e.decision is RoutingDecision.SLA_BREACHED]
    assert breaches == [(datetime(2026, 11, 24, 9, 50, tzinfo=UTC), "next_response target missed")]


def test_waiting_for_customer_pauses_the_resolution_clock() -> None:
    engine, clock = setup(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))  # Tuesday 09:00 Berlin
    engine.handle(agent_event("a1"))
    conv_id = engine.handle(inbound(thread="t")).log[-1].conversation_id
    clock.tick(minutes=50)
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv_id))  # pause after 50m
    clock.tick(hours=2, minutes=10)
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    engine.handle(inbound(thread="t", text="here you go"))  # resume at 12:00 Berlin: 3h10m left
    engine.handle(ReplySent(tenant_id="acme", agent_id="a1", conversation_id=conv_id, waiting_for_customer=False))
    wakeups = run_until(engine, clock, datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    breaches = [(when, e.reason) for when, fx in wakeups for e in fx.log if e.decision is RoutingDecision.SLA_BREACHED]
    assert breaches == [(datetime(2026, 11, 24, 14, 10, tzinfo=UTC), "resolution target missed")]
    late = [d for _, fx in wakeups for d in fx.dispatches if d.kind is DispatchKind.ESCALATION]
    assert [d.escalation.step for d in late if d.escalation is not None] == ["late"]


def test_weekends_and_holidays_do_not_count() -> None:
    engine, clock = setup(datetime(2026, 12, 24, 15, 30, tzinfo=UTC))  # Thursday 16:30; Friday is a holiday
    engine.handle(inbound())
    wakeups = run_until(engine, clock, datetime(2026, 12, 29, 0, 0, tzinfo=UTC))
    breaches = [(when, e.reason) for when, fx in wakeups for e in fx.log if e.decision is RoutingDecision.SLA_BREACHED]
    assert breaches == [
        (datetime(2026, 12, 28, 8, 30, tzinfo=UTC), "first_response target missed"),  # Monday 09:30 Berlin
        (datetime(2026, 12, 28, 11, 30, tzinfo=UTC), "resolution target missed"),  # Monday 12:30 Berlin
    ]


def test_resolving_stops_every_clock() -> None:
    engine, clock = setup()
    conv_id = engine.handle(inbound()).log[-1].conversation_id
    engine.handle(ConversationResolved(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    wakeups = run_until(engine, clock, datetime(2026, 11, 30, 0, 0, tzinfo=UTC))
    assert not [e for _, fx in wakeups for e in fx.log]


def test_relax_and_move_queue_actions() -> None:
    engine, clock = setup(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    engine.handle(agent_event("mid", skills={"expert": 5}, presence=None))
    conv_id = engine.handle(inbound(channel="chat")).log[-1].conversation_id
    wakeups = run_until(engine, clock, clock.now + timedelta(minutes=6))
    log = [(when - datetime(2026, 11, 24, 9, 0, tzinfo=UTC), e.decision) for when, fx in wakeups for e in fx.log]
    assert log == [
        (timedelta(minutes=2), RoutingDecision.ESCALATED),
        (timedelta(minutes=2), RoutingDecision.RELAXED),
        (timedelta(minutes=2), RoutingDecision.QUEUED),
        (timedelta(minutes=5), RoutingDecision.ESCALATED),
        (timedelta(minutes=5), RoutingDecision.QUEUED),
    ]
    conv = engine.conversation("acme", conv_id)
    assert conv is not None
    assert conv.queue_id == "overflow"
    assert conv.status is ConversationStatus.QUEUED
    fx = engine.handle(agent_event("mid", skills={"expert": 5}, capacity={"chat": 1}))
    assert [(d.kind, d.agent_id) for d in fx.dispatches] == [(DispatchKind.ASSIGNMENT, "mid")]


def test_offer_accept_does_not_disturb_sla() -> None:
    engine, _ = setup()
    engine.handle(agent_event("a1"))
    conv_id = engine.handle(inbound()).log[-1].conversation_id
    fx = engine.handle(OfferAccepted(tenant_id="acme", agent_id="a1", conversation_id=conv_id))
    assert fx.log[0].decision is RoutingDecision.IGNORED  # push queue: nothing was offered
