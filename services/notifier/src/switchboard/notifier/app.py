"""Composition root: settings in, a runnable aiohttp application out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import aiohttp
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata
from prometheus_client import Counter

from switchboard.common.events import DeliveryResult, Dispatch, Record, RecordCodec
from switchboard.common.logging import get_logger
from switchboard.common.runtime import HEALTH, KAFKA, REGISTRY, TOPICS, ConsumerSpec, add_kafka, create_app
from switchboard.notifier.breaker import CircuitBreaker
from switchboard.notifier.callbacks import SlackInteractivity, add_callback_routes
from switchboard.notifier.deliverer import Deliverer
from switchboard.notifier.history import DeliveryHistory
from switchboard.notifier.idempotency import DeliveredStore
from switchboard.notifier.inbox import InboxStore
from switchboard.notifier.inbox_routes import InboxHttp, add_inbox_routes
from switchboard.notifier.publisher import KafkaPublisher, Publisher
from switchboard.notifier.ratelimit import RateLimiter
from switchboard.notifier.retry import RetryPolicy
from switchboard.notifier.service import DispatchHandler, conversation_lane
from switchboard.notifier.settings import NotifierSettings
from switchboard.notifier.signing import WebhookSigner
from switchboard.notifier.sink import RateLimit, SinkRegistry
from switchboard.notifier.sinks.inbox import InboxSink
from switchboard.notifier.sinks.mail import EmailSink, MailIdentity, SmtpConfig
from switchboard.notifier.sinks.slack import SlackSink, SlackThreads
from switchboard.notifier.sinks.teams import TeamsSink
from switchboard.notifier.sinks.webhook import WebhookSink
from switchboard.notifier.urlguard import GuardedResolver, UrlPolicy

log = get_logger(__name__)


@dataclass
class Notifier:
    """The parts of a running notifier (exposed for tests and tools)."""

    settings: NotifierSettings
    sinks: SinkRegistry
    store: DeliveredStore
    threads: SlackThreads
    deliverer: Deliverer
    handler: DispatchHandler
    history: DeliveryHistory | None = None
    inbox: InboxStore | None = None
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)


NOTIFIER = web.AppKey("notifier", Notifier)


def build_app(settings: NotifierSettings, *, publisher: Publisher | None = None) -> web.Application:
    app = create_app(settings)
    topics = app[TOPICS]
    store = DeliveredStore(settings.delivered_store_max)
    threads = SlackThreads()
    sinks = SinkRegistry()
    deliverer = Deliverer(
        sinks,
        store=store,
        retry=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base=settings.retry_base_seconds,
            cap=max(settings.retry_cap_seconds, settings.retry_base_seconds),
            max_retry_after=settings.retry_after_max_seconds,
        ),
        limiter=RateLimiter(),
        breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_seconds),
    )
    deliveries = Counter(
        "switchboard_notifier_deliveries",
        "Delivery results written, by endpoint kind and status",
        ["endpoint_kind", "status"],
        registry=app[REGISTRY],
    )

    handler = DispatchHandler(
        deliverer, _CountingProducer(app, topics.delivery, deliveries), topics, settings.consumer_group
    )
    notifier = Notifier(settings, sinks, store, threads, deliverer, handler)
    app[NOTIFIER] = notifier

    if settings.inbox_enabled:
        notifier.inbox = InboxStore(settings.inbox_max_items, settings.inbox_max_agents)
        add_inbox_routes(app, InboxHttp(notifier.inbox, settings.router_url, settings.http_timeout_seconds))

    if settings.slack_signing_secret is not None:
        add_callback_routes(
            app,
            SlackInteractivity(
                settings.slack_signing_secret.get_secret_value(),
                publisher or _ProducerPublisher(app, topics.agent_events),
            ),
        )

    async def history_ready() -> bool:
        return handler.ready.is_set()

    app[HEALTH].add("delivery_history", history_ready)
    app.cleanup_ctx.append(_sinks_ctx)  # before add_kafka: torn down after the consumers stopped

    async def on_assigned(_partitions: set[TopicPartition]) -> None:
        # Another instance may have delivered on these partitions: read what it recorded.
        if notifier.history is not None and handler.ready.is_set():
            try:
                await notifier.history.catch_up()
            except Exception as exc:  # never break the rebalance: the next assignment tries again
                log.warning("delivery history catch-up failed", error=repr(exc))

    add_kafka(
        app,
        ConsumerSpec(
            name="dispatch",
            topics=[topics.dispatch],
            group_id=settings.consumer_group,
            handler=handler,
            codec=RecordCodec(Dispatch),
            on_assigned=on_assigned,
            # Conversations side by side, each one in order (a follow-up never before its assignment).
            concurrency_key=conversation_lane if settings.max_concurrent_deliveries > 1 else None,
            max_concurrency=settings.max_concurrent_deliveries,
        ),
    )
    return app


class _CountingProducer:
    """Writes through the app's producer (which exists once the app starts); counts results."""

    def __init__(self, app: web.Application, delivery_topic: str, counter: Counter) -> None:
        self._app = app
        self._delivery_topic = delivery_topic
        self._counter = counter
        self._children: dict[tuple[str, str], Counter] = {}  # labels() looked up once per pair

    async def send_soon(self, topic: str, record: Record) -> asyncio.Future[RecordMetadata]:
        written = await self._app[KAFKA].producer.send_soon(topic, record)
        if topic == self._delivery_topic and isinstance(record, DeliveryResult):
            labels = (record.endpoint.kind.value, record.status.value)
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self._counter.labels(*labels)
            written.add_done_callback(partial(_count_written, child))
        return written


def _count_written(child: Counter, written: asyncio.Future[RecordMetadata]) -> None:
    """A result is counted once the broker acknowledged it."""
    if not written.cancelled() and written.exception() is None:
        child.inc()


class _ProducerPublisher:
    def __init__(self, app: web.Application, topic: str) -> None:
        self._app = app
        self._topic = topic

    async def publish(self, record: Record) -> None:
        await KafkaPublisher(self._app[KAFKA].producer, self._topic).publish(record)


def register_builtin_sinks(notifier: Notifier, plain: aiohttp.ClientSession, guarded: aiohttp.ClientSession) -> None:
    s = notifier.settings
    if s.slack_token is not None:
        slack = SlackSink.create(
            s.slack_token.get_secret_value(),
            session=plain,
            base_url=s.slack_api_url,
            timeout=int(max(1, s.http_timeout_seconds)),
            threads=notifier.threads,
            rate_limit=RateLimit(rate=s.slack_posts_per_second),
        )
        notifier.sinks.register(slack)
    if s.teams_enabled:
        notifier.sinks.register(
            TeamsSink(guarded, UrlPolicy(tuple(s.teams_allowed_hosts)), timeout=s.http_timeout_seconds)
        )
    if s.email_sender:
        smtp = SmtpConfig(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_use_tls,
            start_tls=s.smtp_start_tls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            validate_certs=s.smtp_validate_certs,
            timeout=s.smtp_timeout_seconds,
        )
        identity = MailIdentity(
            sender=s.email_sender,
            reply_local_part=s.email_reply_local_part,
            reply_domain=s.email_reply_domain,
            sender_name=s.email_sender_name,
        )
        notifier.sinks.register(EmailSink(smtp, identity))
    if s.webhook_secrets:
        signer = WebhookSigner([secret.get_secret_value() for secret in s.webhook_secrets])
        policy = UrlPolicy(tuple(s.webhook_allowed_hosts), allow_private=s.webhook_allow_private)
        notifier.sinks.register(WebhookSink(guarded, signer, policy, timeout=s.http_timeout_seconds))
    if notifier.inbox is not None:
        notifier.sinks.register(InboxSink(notifier.inbox))


async def _sinks_ctx(app: web.Application) -> AsyncIterator[None]:
    notifier = app[NOTIFIER]
    s = notifier.settings
    plain = aiohttp.ClientSession()
    # Webhook and Teams traffic resolves through the URL guard (private targets only when allowed).
    guard = UrlPolicy(("*",), allow_private=s.webhook_allow_private)
    guarded = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=GuardedResolver(guard)))
    notifier.sessions = [plain, guarded]
    register_builtin_sinks(notifier, plain, guarded)
    loaded = notifier.sinks.load_entry_points()
    log.info(
        "sinks ready",
        kinds=sorted(k.value for k in notifier.sinks.kinds()),
        plugins=loaded,
    )
    restore = asyncio.create_task(_restore(app), name="delivery-history")
    try:
        yield
    finally:
        restore.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await restore
        await plain.close()
        await guarded.close()


async def _restore(app: web.Application) -> None:
    """Read delivery.v1 once the broker is reachable, then let the dispatch handler start."""
    notifier = app[NOTIFIER]
    kafka = app[KAFKA]
    await kafka.connected.wait()
    history = DeliveryHistory(notifier.settings.kafka, app[TOPICS].delivery, notifier.store, notifier.threads)
    backoff = 0.2
    while True:
        try:
            await history.catch_up()
            break
        except Exception as exc:  # the broker went away again: keep trying
            log.warning("delivery history not read; retrying", error=repr(exc), retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    notifier.history = history
    notifier.handler.ready.set()
