"""The changelog's outbox records: a step's output split to stay under the broker's record size."""

from __future__ import annotations

from switchboard.common.events import Dispatch, RoutingLogEntry, decode, encode
from switchboard.router.changelog import OUTBOX_MAX_BYTES, Outbox
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.rules import parse_rules
from switchboard.router.testing import FakeClock, agent_event, inbound

RULES = """
tenants:
  acme:
    default_queue: general
    queues:
      - id: general
        match: {}
"""


def step_output(messages: int) -> tuple[list[Dispatch], list[RoutingLogEntry]]:
    engine = RouterEngine(parse_rules(RULES), FakeClock())
    engine.handle(agent_event("a1", capacity={"email": messages}))
    dispatches: list[Dispatch] = []
    entries: list[RoutingLogEntry] = []
    for i in range(messages):
        fx: Effects = engine.handle(inbound(handle=f"customer-{i}", text="where is my order? " * 15))
        dispatches += fx.dispatches
        entries += fx.log
    return dispatches, entries


def test_a_step_over_the_limit_is_split_in_order_and_each_part_stays_under_it() -> None:
    dispatches, entries = step_output(40)
    limit = 8 * 1024
    parts = Outbox.split(dispatches, entries, limit)
    assert len(parts) > 1
    for part in parts:
        encoded = part.encode()
        assert len(encoded) <= limit
        back = Outbox.decode(encoded)
        assert (back.dispatches, back.log, back.tenants) == (part.dispatches, part.log, part.tenants)
        assert len(part.tenants) == len(part.dispatches) + len(part.log)
    # every record once, in the step's order: dispatches, then log entries
    assert [r for p in parts for r in p.dispatches] == [encode(d) for d in dispatches]
    assert [r for p in parts for r in p.log] == [encode(e) for e in entries]
    assert decode(parts[0].dispatches[0]) == dispatches[0]


def test_a_step_under_the_limit_is_one_outbox_and_a_record_over_it_gets_its_own() -> None:
    dispatches, entries = step_output(3)
    (whole,) = Outbox.split(dispatches, entries, OUTBOX_MAX_BYTES)
    assert whole == Outbox(
        dispatches=[encode(d) for d in dispatches],
        log=[encode(e) for e in entries],
        tenants=[r.tenant_id for r in (*dispatches, *entries)],
    )
    tiny = Outbox.split(dispatches, entries, 10)  # smaller than any record: one record per outbox
    assert [len(p.dispatches) + len(p.log) for p in tiny] == [1] * (len(dispatches) + len(entries))
    assert Outbox.split([], []) == []
