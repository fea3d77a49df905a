from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.router.timers import TimerHeap, TimerKey, TimerKind

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def key(entity: str, kind: TimerKind = TimerKind.OFFER, tenant: str = "acme") -> TimerKey:
    return TimerKey(kind, tenant, entity)


def test_timers_pop_in_due_order_and_only_when_due() -> None:
    heap = TimerHeap()
    heap.schedule(key("b"), T0 + timedelta(seconds=20))
    heap.schedule(key("a"), T0 + timedelta(seconds=10))
    heap.schedule(key("c"), T0 + timedelta(seconds=30))
    assert heap.next_deadline() == T0 + timedelta(seconds=10)
    assert heap.pop_due(T0 + timedelta(seconds=9)) is None
    assert heap.pop_due(T0 + timedelta(seconds=25)) == key("a")
    assert heap.pop_due(T0 + timedelta(seconds=25)) == key("b")
    assert heap.pop_due(T0 + timedelta(seconds=25)) is None
    assert len(heap) == 1


def test_rescheduling_replaces_and_cancel_removes() -> None:
    heap = TimerHeap()
    heap.schedule(key("a"), T0 + timedelta(seconds=10))
    heap.schedule(key("a"), T0 + timedelta(seconds=50))
    heap.schedule(key("a", TimerKind.SLA), T0 + timedelta(seconds=40))
    assert heap.next_deadline() == T0 + timedelta(seconds=40)
    assert heap.due_at(key("a")) == T0 + timedelta(seconds=50)
    heap.cancel(key("a", TimerKind.SLA))
    assert heap.next_deadline() == T0 + timedelta(seconds=50)
    assert heap.pop_due(T0 + timedelta(hours=1)) == key("a")
    assert heap.next_deadline() is None


def test_cancel_tenant_drops_only_that_tenant() -> None:
    heap = TimerHeap()
    heap.schedule(key("a", tenant="acme"), T0)
    heap.schedule(key("a", tenant="globex"), T0 + timedelta(seconds=1))
    heap.cancel_tenant("acme")
    assert heap.pop_due(T0 + timedelta(seconds=5)) == key("a", tenant="globex")
    assert heap.pop_due(T0 + timedelta(seconds=5)) is None


def test_due_times_keep_their_microseconds_and_equal_ones_pop_in_key_order() -> None:
    heap = TimerHeap()
    due = datetime(2026, 11, 23, 9, 0, 0, 123457, tzinfo=UTC)
    heap.schedule(key("b"), due)
    heap.schedule(key("a"), due)
    heap.schedule(key("c"), due + timedelta(microseconds=1))
    assert heap.next_deadline() == due
    assert heap.due_at(key("c")) == due + timedelta(microseconds=1)
    assert heap.pop_due(due - timedelta(microseconds=1)) is None
    assert [heap.pop_due(due), heap.pop_due(due), heap.pop_due(due)] == [key("a"), key("b"), None]
    assert heap.pop_due(due + timedelta(microseconds=1)) == key("c")
