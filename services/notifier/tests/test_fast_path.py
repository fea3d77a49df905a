"""The per-delivery fast path: remembered URL decisions, signing, body encoding, serialisation,
first-try retries, the delivered-pairs store and the per-delivery log level."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import structlog
from standardwebhooks.webhooks import Webhook

from switchboard.common.events import DeliveryEndpoint, DeliveryStatus, EndpointKind
from switchboard.common.kafka.consumer import Message
from switchboard.common.topics import Topics
from switchboard.notifier.deliverer import Deliverer
from switchboard.notifier.idempotency import DeliveredStore
from switchboard.notifier.ordering import KeyedSerializer
from switchboard.notifier.outcome import DeliveryOutcome, OutcomeKind
from switchboard.notifier.retry import RetryPolicy, retrying
from switchboard.notifier.service import DispatchHandler
from switchboard.notifier.signing import WebhookSigner
from switchboard.notifier.sink import BaseSink, SinkRegistry
from switchboard.notifier.sinks.webhook import webhook_body
from switchboard.notifier.urlguard import UrlChecker, UrlPolicy, UrlRefused

from .conftest import FakeClock, RecordingSleep  # type: ignore[import-not-found]

SECRET_A = "whsec_" + "c2VjcmV0LWEtc2VjcmV0LWEtc2VjcmV0LWE="
SECRET_B = "whsec_" + "c2VjcmV0LWItc2VjcmV0LWI"  # unpadded base64, as the reference library accepts


class CountingResolver:
    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return list(self.addresses)


# --------------------------------------------------------------------------- URL checker


async def test_checker_resolves_a_name_once_per_ttl(clock: FakeClock) -> None:
    resolve = CountingResolver("93.184.216.34")
    checker = UrlChecker(UrlPolicy(("desk.example.com",)), resolve=resolve, ttl=10.0, clock=clock)
    for _ in range(3):
        assert (await checker.check("https://desk.example.com/hook")).host == "desk.example.com"
    await checker.check("https://desk.example.com/other")  # same host and port: same resolution
    assert resolve.calls == [("desk.example.com", 443)]
    clock.advance(10.0)
    await checker.check("https://desk.example.com/hook")
    assert resolve.calls == [("desk.example.com", 443)] * 2


async def test_checker_refuses_a_name_that_now_resolves_to_a_private_address(clock: FakeClock) -> None:
    resolve = CountingResolver("93.184.216.34")
    checker = UrlChecker(UrlPolicy(("*",)), resolve=resolve, ttl=5.0, clock=clock)
    await checker.check("https://desk.example.com/hook")
    resolve.addresses = ["10.0.0.7"]  # rebinding: trusted at most until the TTL runs out
    clock.advance(5.0)
    for _ in range(2):  # a refusal is not remembered: each check resolves again
        with pytest.raises(UrlRefused, match="non-public"):
            await checker.check("https://desk.example.com/hook")
    assert len(resolve.calls) == 3
    resolve.addresses = ["93.184.216.34"]
    await checker.check("https://desk.example.com/hook")


async def test_checker_remembers_decisions_that_depend_on_the_url_alone() -> None:
    resolve = CountingResolver("93.184.216.34")
    checker = UrlChecker(UrlPolicy(("desk.example.com",)), resolve=resolve)
    for _ in range(2):
        with pytest.raises(UrlRefused, match="not in the allowed hosts"):
            await checker.check("https://evil.example.org/x")
        with pytest.raises(UrlRefused, match="scheme"):
            await checker.check("ftp://desk.example.com/x")
    literal = UrlChecker(UrlPolicy(("*",)), resolve=resolve)
    for _ in range(2):
        with pytest.raises(UrlRefused, match="non-public"):
            await literal.check("http://169.254.169.254/latest/meta-data")
        assert (await literal.check("http://93.184.216.34/x")).host == "93.184.216.34"
    assert resolve.calls == []  # IP literals and static refusals never resolve


async def test_checker_memory_is_bounded() -> None:
    checker = UrlChecker(UrlPolicy(("*",), allow_private=True), max_entries=3)
    for i in range(10):
        await checker.check(f"http://127.0.0.1:{8000 + i}/x")
        assert len(checker._urls) <= 3
    with pytest.raises(ValueError, match="max_entries"):
        UrlChecker(UrlPolicy(), max_entries=0)


# --------------------------------------------------------------------------- signing and body


def test_signature_is_the_reference_implementations(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(customer_name="Zoë Ünicode")
    body = webhook_body(dispatch, 1_767_225_600)
    signature = WebhookSigner([SECRET_A, SECRET_B]).signature(dispatch.dispatch_id, 1_767_225_600, body)
    when = datetime.fromtimestamp(1_767_225_600, UTC)
    expected = [Webhook(s).sign(dispatch.dispatch_id, when, body.decode()) for s in (SECRET_A, SECRET_B)]
    assert signature.split(" ") == expected


def test_body_is_the_envelope_of_the_dispatch_record(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    dispatch = make_dispatch(customer_name='Zoë "Ünicode" \\ ✓', subject="line\nbreak")
    expected = orjson.dumps(
        {
            "type": "dispatch.assignment",
            "timestamp": 42,
            "data": dispatch.model_dump(mode="json", by_alias=True),
        }
    )
    assert webhook_body(dispatch, 42) == expected
    assert orjson.loads(webhook_body(dispatch, 42))["data"]["conversation"]["customer_name"] == 'Zoë "Ünicode" \\ ✓'


# --------------------------------------------------------------------------- serialisation


async def test_a_waiter_cancelled_before_its_turn_leaves_the_queue() -> None:
    serializer = KeyedSerializer()
    release = asyncio.Event()
    order: list[str] = []

    async def step(name: str, wait: bool = False) -> str:
        if wait:
            await release.wait()
        order.append(name)
        return name

    first = asyncio.create_task(serializer.run("k", lambda: step("first", wait=True)))
    second = asyncio.create_task(serializer.run("k", lambda: step("second")))
    third = asyncio.create_task(serializer.run("k", lambda: step("third")))
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.sleep(0)
    assert order == []  # the third still waits for the first
    release.set()
    assert await first == "first"
    assert await third == "third"
    with pytest.raises(asyncio.CancelledError):
        await second
    assert order == ["first", "third"]
    assert len(serializer) == 0


async def test_a_waiter_cancelled_as_its_turn_comes_hands_it_on() -> None:
    serializer = KeyedSerializer()
    order: list[str] = []
    tasks: dict[str, asyncio.Task[None]] = {}
    release = asyncio.Event()

    async def step(name: str) -> None:
        order.append(name)
        if name == "first":
            await release.wait()
            # Runs after the first hands its turn on, before the second can take it.
            asyncio.get_running_loop().call_soon(tasks["second"].cancel)

    for name in ("first", "second", "third"):
        tasks[name] = asyncio.create_task(serializer.run("k", lambda name=name: step(name)))  # type: ignore[misc]
    await asyncio.sleep(0)  # the second and the third are queued behind the first
    release.set()
    await tasks["first"]
    with pytest.raises(asyncio.CancelledError):
        await tasks["second"]
    await asyncio.wait_for(tasks["third"], 5)  # hangs if the cancelled second kept the turn
    assert order == ["first", "third"]
    assert len(serializer) == 0


# --------------------------------------------------------------------------- retries and store


async def test_retrying_from_a_first_outcome_continues_the_count(sleep: RecordingSleep) -> None:
    calls: list[int] = []

    async def attempt() -> DeliveryOutcome:
        calls.append(1)
        return DeliveryOutcome.delivered("ref") if len(calls) == 2 else DeliveryOutcome.retry("503")

    result = await retrying(RetryPolicy(max_attempts=5), attempt, sleep, first=DeliveryOutcome.retry("timeout"))
    assert (result.outcome.kind, result.outcome.external_ref, result.attempts) == (OutcomeKind.DELIVERED, "ref", 3)
    assert len(calls) == 2
    assert len(sleep.delays) == 2


def test_store_lookup_and_mark_by_key() -> None:
    store = DeliveredStore(max_entries=1000)
    ep = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://desk.example.com/h")
    key = store.key("acme", "d1", ep)
    assert key == ("acme", "d1", "webhook:https://desk.example.com/h")
    assert store.lookup(key) is None
    store.mark_key(key, "ref-1")
    assert store.lookup(key) == ("ref-1", False)
    store.mark_key(key, confirmed=True)  # keeps the reference, records the confirmation
    assert store.lookup(key) == ("ref-1", True)
    store.mark_key(key)  # a confirmation is never taken back
    assert store.is_confirmed("acme", "d1", ep)
    assert DeliveryOutcome.delivered() is DeliveryOutcome.delivered()  # the shared plain outcome
    assert DeliveryOutcome.delivered("x").external_ref == "x"


def test_marking_a_pair_again_makes_it_the_newest() -> None:
    store = DeliveredStore(max_entries=3)
    ep = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://desk.example.com/h")
    for i in range(3):
        store.mark("acme", f"d{i}", ep)
    store.mark("acme", "d0", ep, confirmed=True)  # d0 is now the newest, d1 the oldest
    store.mark("acme", "d3", ep)
    assert [store.is_delivered("acme", f"d{i}", ep) for i in range(4)] == [True, False, True, True]


# --------------------------------------------------------------------------- log level per delivery


class _Sink(BaseSink):
    kind = EndpointKind.WEBHOOK

    def __init__(self, outcome: DeliveryOutcome) -> None:
        self.outcome = outcome

    async def deliver(self, dispatch, endpoint):  # type: ignore[no-untyped-def]
        return self.outcome


class _Written:
    """A record sink whose acknowledgements the test gives (or withholds) itself."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, asyncio.Future[Any]]] = []

    async def send_soon(self, topic: str, record: Any) -> asyncio.Future[Any]:
        written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, record, written))
        return written


async def test_the_handler_returns_before_the_results_are_acknowledged_and_confirms_them_after(  # type: ignore[no-untyped-def]
    make_dispatch,
) -> None:
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://desk.example.com/h")
    sink = _Written()
    deliverer = Deliverer(SinkRegistry([_Sink(DeliveryOutcome.delivered())]))
    handler = DispatchHandler(deliverer, sink, Topics(), "g")
    handler.ready.set()
    first, second = make_dispatch(endpoints=(endpoint,)), make_dispatch(endpoints=(endpoint,))
    await handler(Message(first, "t", 0, 0, b"acme", b"{}", 0))  # returns with its result only enqueued
    await handler(Message(second, "t", 0, 1, b"acme", b"{}", 0))
    assert [(topic, record.dispatch_id) for topic, record, _ in sink.sent] == [
        (Topics().delivery, first.dispatch_id),
        (Topics().delivery, second.dispatch_id),
    ]
    store = deliverer.store
    assert store.is_delivered("acme", first.dispatch_id, endpoint)
    assert not store.is_confirmed("acme", first.dispatch_id, endpoint)
    sink.sent[0][2].set_result(None)  # the broker acknowledged the first result
    sink.sent[1][2].set_exception(RuntimeError("not acknowledged"))
    await asyncio.sleep(0)
    assert store.is_confirmed("acme", first.dispatch_id, endpoint)
    assert not store.is_confirmed("acme", second.dispatch_id, endpoint)  # redelivered, it is reported again


async def test_a_success_is_a_debug_line_and_a_failure_an_info_line(make_dispatch) -> None:  # type: ignore[no-untyped-def]
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="https://desk.example.com/h")
    levels: dict[str, str] = {}
    for name, outcome in (("ok", DeliveryOutcome.delivered()), ("bad", DeliveryOutcome.failed("HTTP 400"))):
        handler = DispatchHandler(Deliverer(SinkRegistry([_Sink(outcome)])), _Written(), Topics(), "g")
        handler.ready.set()
        dispatch = make_dispatch(endpoints=(endpoint,))
        message = Message(dispatch, "t", 0, 0, b"acme", b"{}", 0)
        with structlog.testing.capture_logs() as logs:
            await handler(message)
        (entry,) = logs
        assert entry["status"] == (DeliveryStatus.DELIVERED.value if name == "ok" else DeliveryStatus.FAILED.value)
        levels[name] = entry["log_level"]
    assert levels == {"ok": "debug", "bad": "info"}
