"""The delivery engine called concurrently: one send per (dispatch, endpoint), a breaker with one probe."""

from __future__ import annotations

import asyncio
import random
from typing import ClassVar

from switchboard.common.events import DeliveryEndpoint, DeliveryStatus, Dispatch, DispatchKind, EndpointKind
from switchboard.common.kafka.consumer import Message
from switchboard.notifier.breaker import BreakerState, CircuitBreaker
from switchboard.notifier.deliverer import Deliverer
from switchboard.notifier.idempotency import DeliveredStore
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.ratelimit import RateLimiter
from switchboard.notifier.retry import RetryPolicy
from switchboard.notifier.service import conversation_lane
from switchboard.notifier.sink import BaseSink, SinkRegistry

from .conftest import DispatchFactory, FakeClock, RecordingSleep  # type: ignore[import-not-found]

HOOK = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://desk.example.com/hook")


class GatedSink(BaseSink):
    """Each send waits for the test to answer it: ``calls`` holds (dispatch id, future of the outcome)."""

    kind: ClassVar[EndpointKind] = EndpointKind.WEBHOOK

    def __init__(self) -> None:
        self.calls: list[tuple[str, asyncio.Future[DeliveryOutcome]]] = []
        self.called = asyncio.Event()

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        answer: asyncio.Future[DeliveryOutcome] = asyncio.get_running_loop().create_future()
        self.calls.append((dispatch.dispatch_id, answer))
        self.called.set()
        return await answer

    async def next_call(self) -> asyncio.Future[DeliveryOutcome]:
        """Wait until a send is waiting for its answer; return that answer's future."""
        seen = len(self.calls)
        while len(self.calls) == seen:
            self.called.clear()
            await asyncio.wait_for(self.called.wait(), 5)
        return self.calls[-1][1]


def deliverer(sink: GatedSink, clock: FakeClock, *, threshold: int = 50, attempts: int = 1) -> Deliverer:
    return Deliverer(
        SinkRegistry([sink]),
        store=DeliveredStore(),
        retry=RetryPolicy(max_attempts=attempts, base=0.1, cap=1.0, rng=random.Random(1)),
        limiter=RateLimiter(clock),
        breaker=CircuitBreaker(threshold=threshold, cooldown=10.0, clock=clock),
        sleep=RecordingSleep(clock),
        clock=clock,
    )


async def test_two_concurrent_copies_of_a_dispatch_are_sent_once(
    make_dispatch: DispatchFactory, clock: FakeClock
) -> None:
    sink = GatedSink()
    engine = deliverer(sink, clock)
    dispatch = make_dispatch(endpoints=(HOOK,))
    first = asyncio.create_task(engine.deliver(dispatch))
    answer = await sink.next_call()
    second = asyncio.create_task(engine.deliver(dispatch))  # a redelivered copy, while the first is in flight
    other = make_dispatch(endpoints=(HOOK,))
    third = asyncio.create_task(engine.deliver(other))  # another dispatch is not held back
    other_answer = await sink.next_call()
    assert [d for d, _ in sink.calls] == [dispatch.dispatch_id, other.dispatch_id]
    other_answer.set_result(DeliveryOutcome.delivered("ref-other"))
    assert (await third)[0].result.status is DeliveryStatus.DELIVERED
    assert not second.done()
    answer.set_result(DeliveryOutcome.delivered("ref-1"))
    (r1,), (r2,) = await asyncio.gather(first, second)
    assert len(sink.calls) == 2  # the copy was not sent
    assert (r1.result.status, r1.result.external_ref, r1.result.attempts) == (DeliveryStatus.DELIVERED, "ref-1", 1)
    # Its result was not confirmed on delivery.v1 yet: the copy reports the delivery, without a send.
    assert (r2.result.status, r2.result.external_ref, r2.result.attempts) == (DeliveryStatus.DELIVERED, "ref-1", 0)


async def test_a_call_from_before_the_circuit_opened_does_not_release_the_probe(
    make_dispatch: DispatchFactory, clock: FakeClock
) -> None:
    sink = GatedSink()
    engine = deliverer(sink, clock, threshold=1)
    target = sink.target_key(HOOK)
    old = asyncio.create_task(engine.deliver(make_dispatch(endpoints=(HOOK,))))
    old_answer = await sink.next_call()  # in flight while the circuit is closed
    failing = asyncio.create_task(engine.deliver(make_dispatch(endpoints=(HOOK,))))
    (await sink.next_call()).set_result(DeliveryOutcome.retry("HTTP 503"))
    assert (await failing)[0].result.status is DeliveryStatus.FAILED
    assert engine.breaker.state(target) is BreakerState.OPEN
    clock.advance(10.0)
    probe = asyncio.create_task(engine.deliver(make_dispatch(endpoints=(HOOK,))))
    probe_answer = await sink.next_call()  # the one probe of the half-open circuit
    old_answer.set_result(DeliveryOutcome.failed("HTTP 404"))  # a permanent failure of the old call
    await old
    assert not engine.breaker.allow(target)  # no second probe may go out
    assert len(sink.calls) == 3
    probe_answer.set_result(DeliveryOutcome.delivered())
    await probe
    assert engine.breaker.state(target) is BreakerState.CLOSED


def test_the_concurrency_key_is_the_conversation(make_dispatch: DispatchFactory) -> None:
    def message(dispatch: Dispatch) -> Message:
        return Message(record=dispatch, topic="t", partition=0, offset=0, key=None, value=None, timestamp_ms=0)

    a1 = make_dispatch(DispatchKind.ASSIGNMENT, conversation_id="a")
    a2 = make_dispatch(DispatchKind.FOLLOW_UP, conversation_id="a")
    b = make_dispatch(conversation_id="b")
    other_tenant = make_dispatch(conversation_id="a", tenant_id="globex")
    assert conversation_lane(message(a1)) == conversation_lane(message(a2)) == ("acme", "a")
    assert len({conversation_lane(message(d)) for d in (a1, b, other_tenant)}) == 3
