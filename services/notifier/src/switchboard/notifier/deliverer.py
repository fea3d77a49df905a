"""Delivery of one dispatch to each of its endpoints: idempotency, rate limits, breaker, retries.

Safe to call concurrently (the service delivers many conversations at once): the store,
the limiter and the breaker are updated without awaiting in between, and two concurrent
deliveries of the same (dispatch, endpoint) are serialised, so the second one sees the
first's delivery and does not send again.

:class:`Deliverer` is I/O-free apart from its sinks; the clock and the sleep are injected.
It returns one :class:`EndpointReport` per endpoint; the service turns those into
``delivery.v1`` results and, for failures, ``dlq.v1`` dead letters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from switchboard.common.events import DeliveryEndpoint, DeliveryResult, DeliveryStatus, Dispatch
from switchboard.common.logging import get_logger
from switchboard.notifier.breaker import BreakerState, CircuitBreaker
from switchboard.notifier.idempotency import DeliveredStore, StoreKey
from switchboard.notifier.ordering import KeyedSerializer
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.ratelimit import RateLimiter
from switchboard.notifier.retry import RetryPolicy, retrying
from switchboard.notifier.sink import Sink, SinkRegistry

log = get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EndpointReport:
    result: DeliveryResult

    @property
    def failed(self) -> bool:
        return self.result.status is DeliveryStatus.FAILED


class Deliverer:
    def __init__(
        self,
        sinks: SinkRegistry,
        *,
        store: DeliveredStore | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sinks = sinks
        self.store = store if store is not None else DeliveredStore()
        self.retry = retry if retry is not None else RetryPolicy()
        self.limiter = limiter if limiter is not None else RateLimiter(clock)
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock=clock)
        self._sleep = sleep
        # One delivery per (dispatch, endpoint) at a time: a concurrent copy of a dispatch waits
        # for the first, then finds it delivered instead of sending again.
        self._in_flight = KeyedSerializer()

    async def deliver(self, dispatch: Dispatch) -> list[EndpointReport]:
        """Deliver to every endpoint (concurrently); one report per endpoint, in endpoint order."""
        if len(dispatch.endpoints) == 1:
            return [await self._one(dispatch, dispatch.endpoints[0])]
        return list(await asyncio.gather(*(self._one(dispatch, ep) for ep in dispatch.endpoints)))

    async def _one(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> EndpointReport:
        key = self.store.key(dispatch.tenant_id, dispatch.dispatch_id, endpoint)
        return await self._in_flight.run(key, lambda: self._one_now(dispatch, endpoint, key))

    async def _one_now(self, dispatch: Dispatch, endpoint: DeliveryEndpoint, key: StoreKey) -> EndpointReport:
        delivered = self.store.lookup(key)
        if delivered is not None:
            ref, confirmed = delivered
            # Confirmed: a duplicate. Otherwise it was sent before but its result never reached
            # delivery.v1: report it as delivered (without resending).
            status = DeliveryStatus.DUPLICATE if confirmed else DeliveryStatus.DELIVERED
            return self._report(dispatch, endpoint, status, 0, None, ref)
        sink = self.sinks.get(endpoint.kind)
        if sink is None:
            error = f"no sink is registered for endpoint kind {endpoint.kind.value!r}"
            return self._report(dispatch, endpoint, DeliveryStatus.FAILED, 0, error, None)
        target = sink.target_key(endpoint)
        try:
            # The first try directly (most deliveries need no other); retries under the policy.
            outcome, attempts = await self._attempt(sink, target, dispatch, endpoint, key), 1
            if not self.retry.gives_up(1, outcome):
                attempted = await retrying(
                    self.retry, lambda: self._attempt(sink, target, dispatch, endpoint, key), self._sleep, first=outcome
                )
                outcome, attempts = attempted.outcome, attempted.attempts
        except Exception as exc:  # a sink bug must not lose the dispatch: report it as failed
            log.exception("sink raised", kind=endpoint.kind.value, dispatch_id=dispatch.dispatch_id)
            outcome, attempts = DeliveryOutcome.failed(f"sink error: {type(exc).__name__}"), 1
        if outcome.ok:
            self.store.mark_key(key, outcome.external_ref)
            return self._report(dispatch, endpoint, DeliveryStatus.DELIVERED, attempts, None, outcome.external_ref)
        return self._report(dispatch, endpoint, DeliveryStatus.FAILED, attempts, outcome.error, None)

    async def _attempt(
        self, sink: Sink, target: str, dispatch: Dispatch, endpoint: DeliveryEndpoint, key: StoreKey
    ) -> DeliveryOutcome:
        # A repeat of a dispatch already delivered meanwhile (by a concurrent redelivery) is not sent.
        delivered = self.store.lookup(key)
        if delivered is not None:
            return DeliveryOutcome.delivered(delivered[0])
        probe = self.breaker.state(target) is BreakerState.HALF_OPEN
        if not self.breaker.allow(target):
            # Fail fast: an open circuit does not hold the partition for its whole cool-down.
            return DeliveryOutcome.failed(f"circuit open for this {endpoint.kind.value} target")
        if sink.rate_limit is not None:
            wait = self.limiter.reserve(target, sink.rate_limit)
            if wait > 0:
                await self._sleep(wait)
        outcome = await sink.deliver(dispatch, endpoint)
        if outcome.ok:
            self.breaker.record_success(target)
        elif outcome.retryable:
            self.breaker.record_failure(target)
        elif probe:
            # A permanent failure says nothing about the target's health: let another probe go.
            # Only the probe itself may do that, not a call that began before the circuit opened.
            self.breaker.release(target)
        return outcome

    @staticmethod
    def _report(
        dispatch: Dispatch,
        endpoint: DeliveryEndpoint,
        status: DeliveryStatus,
        attempts: int,
        error: str | None,
        external_ref: str | None,
    ) -> EndpointReport:
        return EndpointReport(
            DeliveryResult(
                tenant_id=dispatch.tenant_id,
                dispatch_id=dispatch.dispatch_id,
                dispatch_kind=dispatch.kind,
                conversation_id=dispatch.conversation.conversation_id,
                agent_id=dispatch.agent_id,
                endpoint=endpoint,
                status=status,
                attempts=attempts,
                error=error,
                external_ref=external_ref,
            )
        )
