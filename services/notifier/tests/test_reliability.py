"""Retry decisions, rate limiting, circuit breaking, idempotency and per-key ordering (no sleeping)."""

from __future__ import annotations

import asyncio
import random

import pytest

from switchboard.common.events import DeliveryEndpoint, DeliveryResult, DeliveryStatus, DispatchKind, EndpointKind
from switchboard.notifier.breaker import BreakerState, CircuitBreaker
from switchboard.notifier.idempotency import DeliveredStore
from switchboard.notifier.ordering import KeyedSerializer, run_ordered
from switchboard.notifier.outcome import DeliveryOutcome, OutcomeKind, outcome_for_http_status, parse_retry_after
from switchboard.notifier.ratelimit import RateLimiter
from switchboard.notifier.retry import RetryPolicy, retrying
from switchboard.notifier.sink import RateLimit


class Script:
    """An attempt function returning the scripted outcomes in turn."""

    def __init__(self, *outcomes: DeliveryOutcome) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> DeliveryOutcome:
        self.calls += 1
        return self.outcomes.pop(0)


# --------------------------------------------------------------------------- retry


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=3.0)
    assert [policy.backoff_ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_the_ceiling_and_varies() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0, rng=random.Random(7))
    delays = [policy.delay(4, DeliveryOutcome.retry("x")) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert max(delays) > 4.0 > min(delays)


def test_retry_after_replaces_the_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.delay(1, DeliveryOutcome.retry("429", retry_after=7.0)) == 7.0
    assert policy.gives_up(1, DeliveryOutcome.retry("429", retry_after=61.0))
    assert not policy.gives_up(1, DeliveryOutcome.retry("429", retry_after=60.0))


async def test_retries_until_delivered_sleeping_between(sleep) -> None:  # type: ignore[no-untyped-def]
    script = Script(
        DeliveryOutcome.retry("503"),
        DeliveryOutcome.retry("429", retry_after=2.5),
        DeliveryOutcome.retry("timeout"),
        DeliveryOutcome.delivered("ref-1"),
    )
    policy = RetryPolicy(max_attempts=5, base=1.0, cap=10.0, rng=random.Random(1))
    result = await retrying(policy, script, sleep)
    assert result.outcome == DeliveryOutcome.delivered("ref-1")
    assert result.attempts == 4
    assert len(sleep.delays) == 3
    assert 0 <= sleep.delays[0] <= 1.0
    assert sleep.delays[1] == 2.5
    assert 0 <= sleep.delays[2] <= 4.0


async def test_permanent_failure_is_not_retried(sleep) -> None:  # type: ignore[no-untyped-def]
    script = Script(DeliveryOutcome.failed("HTTP 400"), DeliveryOutcome.delivered())
    result = await retrying(RetryPolicy(), script, sleep)
    assert result.outcome.kind is OutcomeKind.FAILED
    assert (result.attempts, script.calls, sleep.delays) == (1, 1, [])


async def test_gives_up_after_the_budget(sleep) -> None:  # type: ignore[no-untyped-def]
    script = Script(*[DeliveryOutcome.retry(f"503 #{i}") for i in range(10)])
    result = await retrying(RetryPolicy(max_attempts=3), script, sleep)
    assert result.outcome == DeliveryOutcome.retry("503 #2")
    assert (result.attempts, script.calls, len(sleep.delays)) == (3, 3, 2)


async def test_an_attempt_that_raises_propagates(sleep) -> None:  # type: ignore[no-untyped-def]
    async def boom() -> DeliveryOutcome:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await retrying(RetryPolicy(), boom, sleep)


@pytest.mark.parametrize(
    ("status", "retry_after", "kind", "wait"),
    [
        (200, None, OutcomeKind.DELIVERED, None),
        (204, None, OutcomeKind.DELIVERED, None),
        (400, None, OutcomeKind.FAILED, None),
        (404, None, OutcomeKind.FAILED, None),
        (408, None, OutcomeKind.RETRY, None),
        (429, "3", OutcomeKind.RETRY, 3.0),
        (500, "3", OutcomeKind.RETRY, None),
        (503, "1.5", OutcomeKind.RETRY, 1.5),
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", OutcomeKind.RETRY, None),
    ],
)
def test_http_status_classification(
    status: int, retry_after: str | None, kind: OutcomeKind, wait: float | None
) -> None:
    outcome = outcome_for_http_status(status, retry_after, "webhook")
    assert outcome.kind is kind
    assert outcome.retry_after == wait


def test_parse_retry_after_refuses_garbage() -> None:
    assert parse_retry_after("-1") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(" 12 ") == 12.0


# --------------------------------------------------------------------------- rate limiting


def test_token_bucket_spaces_posts_one_per_second_per_key(clock) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(clock)
    one_per_second = RateLimit(rate=1.0, burst=1.0)
    assert limiter.reserve("C1", one_per_second) == 0.0
    assert limiter.reserve("C1", one_per_second) == pytest.approx(1.0)
    assert limiter.reserve("C1", one_per_second) == pytest.approx(2.0)
    assert limiter.reserve("C2", one_per_second) == 0.0  # other channels are not held back
    clock.advance(10.0)
    assert limiter.reserve("C1", one_per_second) == 0.0
    assert limiter.reserve("C1", one_per_second) == pytest.approx(1.0)


def test_token_bucket_allows_a_burst_then_the_rate(clock) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(clock)
    limit = RateLimit(rate=2.0, burst=3.0)
    assert [limiter.reserve("k", limit) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]
    clock.advance(0.5)
    assert limiter.reserve("k", limit) == pytest.approx(0.5)


def test_token_bucket_bounds_its_memory(clock) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(clock, max_keys=10)
    limit = RateLimit(rate=1.0)
    for i in range(50):
        limiter.reserve(f"k{i}", limit)
        clock.advance(0.01)
    assert len(limiter) <= 10


def test_rate_limit_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(rate=0)


# --------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_consecutive_failures_and_probes_after_cooldown(clock) -> None:  # type: ignore[no-untyped-def]
    breaker = CircuitBreaker(threshold=3, cooldown=30.0, clock=clock)
    for _ in range(2):
        assert breaker.allow("t")
        breaker.record_failure("t")
    assert breaker.state("t") is BreakerState.CLOSED
    breaker.record_failure("t")
    assert breaker.state("t") is BreakerState.OPEN
    assert not breaker.allow("t")
    assert breaker.allow("other")
    assert breaker.retry_in("t") == pytest.approx(30.0)
    clock.advance(30.0)
    assert breaker.state("t") is BreakerState.HALF_OPEN
    assert breaker.allow("t")  # the probe
    assert not breaker.allow("t")  # only one probe at a time
    breaker.record_failure("t")  # the probe failed: open again for a full cool-down
    assert breaker.state("t") is BreakerState.OPEN
    clock.advance(30.0)
    assert breaker.allow("t")
    breaker.record_success("t")
    assert breaker.state("t") is BreakerState.CLOSED
    assert breaker.allow("t")


def test_breaker_success_resets_the_count(clock) -> None:  # type: ignore[no-untyped-def]
    breaker = CircuitBreaker(threshold=2, cooldown=5.0, clock=clock)
    breaker.record_failure("t")
    breaker.record_success("t")
    breaker.record_failure("t")
    assert breaker.state("t") is BreakerState.CLOSED


# --------------------------------------------------------------------------- idempotency


def _result(status: DeliveryStatus, dispatch_id: str = "d1", target: str = "C1") -> DeliveryResult:
    return DeliveryResult(
        tenant_id="acme",
        dispatch_id=dispatch_id,
        dispatch_kind=DispatchKind.ASSIGNMENT,
        conversation_id="conv-1",
        endpoint=DeliveryEndpoint(kind=EndpointKind.SLACK, target=target),
        status=status,
        external_ref="C1:1.2" if status is DeliveryStatus.DELIVERED else None,
    )


def test_store_is_rebuilt_from_delivered_results_only() -> None:
    store = DeliveredStore()
    assert store.observe(_result(DeliveryStatus.DELIVERED))
    assert not store.observe(_result(DeliveryStatus.FAILED, dispatch_id="d2"))
    assert not store.observe(_result(DeliveryStatus.DUPLICATE, dispatch_id="d3"))
    slack_c1 = DeliveryEndpoint(kind=EndpointKind.SLACK, target="C1")
    assert store.is_delivered("acme", "d1", slack_c1)
    assert store.external_ref("acme", "d1", slack_c1) == "C1:1.2"
    assert not store.is_delivered("acme", "d2", slack_c1)
    assert not store.is_delivered("acme", "d1", DeliveryEndpoint(kind=EndpointKind.SLACK, target="C2"))
    assert not store.is_delivered("other", "d1", slack_c1)


def test_store_forgets_the_oldest_beyond_its_bound() -> None:
    store = DeliveredStore(max_entries=3)
    ep = DeliveryEndpoint(kind=EndpointKind.EMAIL, target="a@example.com")
    for i in range(5):
        store.mark("acme", f"d{i}", ep)
    assert len(store) == 3
    assert not store.is_delivered("acme", "d1", ep)
    assert store.is_delivered("acme", "d4", ep)


# --------------------------------------------------------------------------- ordering


async def test_same_key_runs_in_order_while_other_keys_proceed() -> None:
    serializer = KeyedSerializer()
    release_a1 = asyncio.Event()
    log: list[str] = []

    async def a1() -> str:
        log.append("a1 start")
        await release_a1.wait()
        log.append("a1 end")
        return "a1"

    async def a2() -> str:
        log.append("a2")
        return "a2"

    async def b1() -> str:
        log.append("b1")
        return "b1"

    t_a1 = asyncio.create_task(serializer.run("A", a1))
    t_a2 = asyncio.create_task(serializer.run("A", a2))
    t_b1 = asyncio.create_task(serializer.run("B", b1))
    assert await t_b1 == "b1"  # B finished while A's first item is still blocked
    assert log == ["a1 start", "b1"]
    release_a1.set()
    assert await asyncio.gather(t_a1, t_a2) == ["a1", "a2"]
    assert log == ["a1 start", "b1", "a1 end", "a2"]
    assert len(serializer) == 0


async def test_run_ordered_keeps_item_order_per_key() -> None:
    seen: list[tuple[str, int]] = []

    async def handle(item: tuple[str, int]) -> int:
        # Later items of a key would overtake earlier ones if they were not serialised.
        await asyncio.sleep(0 if item[1] % 2 else 0.001)
        seen.append(item)
        return item[1]

    items = [("a", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5)]
    assert await run_ordered(items, lambda i: i[0], handle) == [0, 1, 2, 3, 4, 5]
    assert [i for i in seen if i[0] == "a"] == [("a", 0), ("a", 2), ("a", 3)]
    assert [i for i in seen if i[0] == "b"] == [("b", 1), ("b", 4), ("b", 5)]


async def test_a_failing_item_does_not_block_its_key() -> None:
    serializer = KeyedSerializer()

    async def boom() -> None:
        raise RuntimeError("x")

    async def ok() -> str:
        return "ok"

    with pytest.raises(RuntimeError):
        await serializer.run("k", boom)
    assert await serializer.run("k", ok) == "ok"
