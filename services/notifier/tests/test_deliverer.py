"""The delivery engine with fake sinks: idempotency, unknown kinds, retries, breaker, rate limits."""

from __future__ import annotations

import random
from typing import ClassVar

from switchboard.common.events import DeliveryEndpoint, DeliveryStatus, Dispatch, DispatchKind, EndpointKind
from switchboard.notifier.breaker import CircuitBreaker
from switchboard.notifier.deliverer import Deliverer
from switchboard.notifier.idempotency import DeliveredStore
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.ratelimit import RateLimiter
from switchboard.notifier.retry import RetryPolicy
from switchboard.notifier.sink import BaseSink, RateLimit, SinkRegistry

SLACK = DeliveryEndpoint(kind=EndpointKind.SLACK, target="C1")
HOOK = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://desk.example.com/hook")
INBOX = DeliveryEndpoint(kind=EndpointKind.INBOX, target="support")


class ScriptedSink(BaseSink):
    """Returns scripted outcomes (the last one repeats) and records what it was asked to send."""

    def __init__(self, kind: EndpointKind, *outcomes: DeliveryOutcome, limit: RateLimit | None = None) -> None:
        self._kind = kind
        self.outcomes = list(outcomes) or [DeliveryOutcome.delivered("ref")]
        self.sent: list[tuple[str, str]] = []
        self._limit = limit

    @property
    def kind(self) -> EndpointKind:  # type: ignore[override]
        return self._kind

    @property
    def rate_limit(self) -> RateLimit | None:  # type: ignore[override]
        return self._limit

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        self.sent.append((dispatch.dispatch_id, endpoint.target))
        return self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]


class RaisingSink(BaseSink):
    kind: ClassVar[EndpointKind] = EndpointKind.EMAIL

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        raise KeyError("bug in a sink")


def _deliverer(clock, sleep, *sinks, attempts: int = 4, threshold: int = 50) -> Deliverer:  # type: ignore[no-untyped-def]
    return Deliverer(
        SinkRegistry(sinks),
        store=DeliveredStore(),
        retry=RetryPolicy(max_attempts=attempts, base=0.1, cap=1.0, rng=random.Random(3)),
        limiter=RateLimiter(clock),
        breaker=CircuitBreaker(threshold=threshold, cooldown=60.0, clock=clock),
        sleep=sleep,
        clock=clock,
    )


async def test_delivers_each_endpoint_and_reports_it(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    slack = ScriptedSink(EndpointKind.SLACK, DeliveryOutcome.delivered("C1:1.1"))
    hook = ScriptedSink(EndpointKind.WEBHOOK)
    deliverer = _deliverer(clock, sleep, slack, hook)
    dispatch = make_dispatch(DispatchKind.OFFER, (SLACK, HOOK))
    reports = await deliverer.deliver(dispatch)
    assert [r.result.status for r in reports] == [DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED]
    first = reports[0].result
    assert (first.dispatch_id, first.conversation_id, first.agent_id) == (dispatch.dispatch_id, "conv-1", "agent-7")
    assert (first.endpoint, first.external_ref, first.attempts, first.dispatch_kind) == (
        SLACK,
        "C1:1.1",
        1,
        DispatchKind.OFFER,
    )
    assert slack.sent == [(dispatch.dispatch_id, "C1")]
    assert hook.sent == [(dispatch.dispatch_id, HOOK.target)]


async def test_a_redelivered_dispatch_is_a_duplicate_and_not_sent_again(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    slack = ScriptedSink(EndpointKind.SLACK, DeliveryOutcome.delivered("C1:1.1"))
    deliverer = _deliverer(clock, sleep, slack)
    dispatch = make_dispatch()
    (first,) = await deliverer.deliver(dispatch)
    unconfirmed = await deliverer.deliver(dispatch)  # the first result never reached the topic
    assert unconfirmed[0].result.status is DeliveryStatus.DELIVERED
    assert unconfirmed[0].result.external_ref == "C1:1.1"
    deliverer.store.confirm(first.result)
    again = await deliverer.deliver(dispatch)
    assert again[0].result.status is DeliveryStatus.DUPLICATE
    assert again[0].result.external_ref == "C1:1.1"
    assert again[0].result.attempts == 0
    assert len(slack.sent) == 1


async def test_store_rebuilt_from_the_topic_prevents_a_resend(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    first = _deliverer(clock, sleep, ScriptedSink(EndpointKind.SLACK))
    dispatch = make_dispatch()
    results = [r.result for r in await first.deliver(dispatch)]
    restarted_sink = ScriptedSink(EndpointKind.SLACK)
    restarted = _deliverer(clock, sleep, restarted_sink)
    for result in results:  # what the service reads back from delivery.v1 at start
        restarted.store.observe(result)
    assert (await restarted.deliver(dispatch))[0].result.status is DeliveryStatus.DUPLICATE
    assert restarted_sink.sent == []


async def test_unknown_endpoint_kind_fails_with_a_clear_error(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    slack = ScriptedSink(EndpointKind.SLACK)
    reports = await _deliverer(clock, sleep, slack).deliver(make_dispatch(endpoints=(INBOX, SLACK)))
    inbox, delivered = reports
    assert inbox.failed
    assert inbox.result.error == "no sink is registered for endpoint kind 'inbox'"
    assert not delivered.failed


async def test_transient_failures_then_success_is_one_delivery(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    hook = ScriptedSink(
        EndpointKind.WEBHOOK,
        DeliveryOutcome.retry("HTTP 503"),
        DeliveryOutcome.retry("HTTP 429", retry_after=4.0),
        DeliveryOutcome.retry("HTTP 500"),
        DeliveryOutcome.delivered(),
    )
    reports = await _deliverer(clock, sleep, hook, attempts=5).deliver(make_dispatch(endpoints=(HOOK,)))
    assert reports[0].result.status is DeliveryStatus.DELIVERED
    assert reports[0].result.attempts == 4
    assert len(hook.sent) == 4
    assert sleep.delays[1] == 4.0


async def test_retry_budget_exhausted_is_a_failed_report(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    hook = ScriptedSink(EndpointKind.WEBHOOK, DeliveryOutcome.retry("webhook answered HTTP 503"))
    reports = await _deliverer(clock, sleep, hook, attempts=3).deliver(make_dispatch(endpoints=(HOOK,)))
    assert reports[0].failed
    assert reports[0].result.attempts == 3
    assert reports[0].result.error == "webhook answered HTTP 503"
    assert len(hook.sent) == 3


async def test_open_circuit_fails_fast_without_calling_the_target(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    hook = ScriptedSink(EndpointKind.WEBHOOK, DeliveryOutcome.retry("HTTP 503"))
    deliverer = _deliverer(clock, sleep, hook, attempts=3, threshold=3)
    await deliverer.deliver(make_dispatch(endpoints=(HOOK,)))
    assert len(hook.sent) == 3
    sleeps_before = len(sleep.delays)
    report = (await deliverer.deliver(make_dispatch(endpoints=(HOOK,))))[0]
    assert report.failed
    assert report.result.error == "circuit open for this webhook target"
    assert len(hook.sent) == 3  # not called again
    assert len(sleep.delays) == sleeps_before  # and no time spent waiting
    clock.advance(60.0)  # cool-down over: a probe goes through and closes the circuit
    hook.outcomes = [DeliveryOutcome.delivered()]
    assert not (await deliverer.deliver(make_dispatch(endpoints=(HOOK,))))[0].failed


async def test_rate_limited_sink_waits_per_target(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    slack = ScriptedSink(EndpointKind.SLACK, limit=RateLimit(rate=1.0))
    deliverer = _deliverer(clock, sleep, slack)
    for i in range(3):
        await deliverer.deliver(make_dispatch(conversation_id=f"c{i}"))
    # The fake sleep advances the clock, so each post after the first waited one second.
    assert sleep.delays == [1.0, 1.0]
    await deliverer.deliver(
        make_dispatch(conversation_id="other", endpoints=(SLACK.model_copy(update={"target": "C9"}),))
    )
    assert len(sleep.delays) == 2  # another channel is not held back


async def test_a_sink_that_raises_becomes_a_failed_report(make_dispatch, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    email = DeliveryEndpoint(kind=EndpointKind.EMAIL, target="agent@example.com")
    report = (await _deliverer(clock, sleep, RaisingSink()).deliver(make_dispatch(endpoints=(email,))))[0]
    assert report.failed
    assert report.result.error == "sink error: KeyError"
