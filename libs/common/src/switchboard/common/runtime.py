"""The service skeleton every Switchboard service runs on.

A service is an aiohttp application built by :func:`create_app`, with:

- ``GET /healthz``: the process is alive;
- ``GET /readyz``: 200 only when every readiness check passes (the broker answers, the
  service's consumers have joined their groups), 503 with the failing checks otherwise;
- ``GET /metrics``: the service's own Prometheus registry.

Kafka resources are composed with :func:`add_kafka` as one cleanup context: the producer
and the consumers connect in the background, retrying with backoff, so the HTTP port
comes up (and answers "not ready") while the broker is away. On SIGTERM aiohttp stops
accepting connections, waits for in-flight requests, then the cleanup context stops the
consumers (each finishes its batch and commits), then flushes and stops the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from switchboard.common.events import RecordCodec
from switchboard.common.gc_tuning import tune_gc
from switchboard.common.kafka.consumer import (
    BatchCallback,
    ConcurrencyKey,
    ConsumerLoop,
    PartitionsCallback,
    RecordHandler,
)
from switchboard.common.kafka.producer import BrokerUnavailable, RecordProducer
from switchboard.common.logging import configure_logging, get_logger
from switchboard.common.metrics import KafkaMetrics, new_registry
from switchboard.common.settings import ServiceSettings
from switchboard.common.topics import Topics, ensure_topics

log = get_logger(__name__)

Check = Callable[[], Awaitable[bool]]


@dataclass
class Health:
    """Named readiness checks; each answers True when its part is ready."""

    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def report(self) -> dict[str, bool]:
        results = await asyncio.gather(*(check() for check in self.checks.values()), return_exceptions=True)
        return {name: result is True for name, result in zip(self.checks, results, strict=True)}


@dataclass
class ConsumerSpec:
    name: str
    topics: Sequence[str]
    group_id: str
    handler: RecordHandler
    codec: RecordCodec | None = None
    on_assigned: PartitionsCallback | None = None
    on_revoked: PartitionsCallback | None = None
    concurrency_key: ConcurrencyKey | None = None
    max_concurrency: int = 16
    on_batch_end: BatchCallback | None = None
    assignors: tuple[type, ...] | None = None
    poll_timeout_ms: int = 500


@dataclass
class Kafka:
    """The producer and consumers of one service, connected in the background."""

    settings: ServiceSettings
    topics: Topics
    metrics: KafkaMetrics
    producer: RecordProducer
    consumers: dict[str, ConsumerLoop] = field(default_factory=dict)
    specs: list[ConsumerSpec] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False

    def consume(self, spec: ConsumerSpec) -> None:
        """Declare a consumer; it starts once the producer is connected."""
        self.specs.append(spec)

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect(), name="kafka-connect"))

    async def _connect(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                if self.settings.kafka.create_topics:
                    created = await ensure_topics(self.settings.kafka, self.topics)
                    if created:
                        log.info("topics created", topics=created)
                await self.producer.start()
                break
            except (KafkaError, OSError) as exc:
                log.warning("broker not reachable; retrying", error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        if self._stopping:
            return
        self.connected.set()
        for spec in self.specs:
            loop = ConsumerLoop(
                kafka=self.settings.kafka,
                topics=spec.topics,
                group_id=spec.group_id,
                handler=spec.handler,
                producer=self.producer,
                dlq_topic=self.topics.dlq,
                codec=spec.codec or RecordCodec(),
                max_attempts=self.settings.consumer_max_attempts,
                metrics=self.metrics,
                on_assigned=spec.on_assigned,
                on_revoked=spec.on_revoked,
                client_id=f"{self.settings.service_name}-{spec.name}",
                concurrency_key=spec.concurrency_key,
                max_concurrency=spec.max_concurrency,
                on_batch_end=spec.on_batch_end,
                assignors=spec.assignors,
                poll_timeout_ms=spec.poll_timeout_ms,
            )
            self.consumers[spec.name] = loop
            self._tasks.append(asyncio.create_task(self._run_consumer(spec.name, loop), name=spec.name))

    async def _run_consumer(self, name: str, loop: ConsumerLoop) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await loop.run()
                return
            except (KafkaError, OSError, BrokerUnavailable) as exc:
                # Nothing after the last commit is lost: the restarted loop re-reads from there.
                log.warning("consumer failed; restarting", consumer=name, error=repr(exc), retry_in=backoff)
            except Exception:
                # A bug or a hook's failure must not silently end consumption: restart, loudly.
                log.exception("consumer failed unexpectedly; restarting", consumer=name, retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def stop(self) -> None:
        """Stop consumers (finish batch, commit), then flush and stop the producer. Idempotent."""
        self._stopping = True
        await asyncio.gather(*(c.stop() for c in self.consumers.values()), return_exceptions=True)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.producer.stop()

    async def broker_ready(self) -> bool:
        return await self.producer.ping()

    def consumers_ready(self) -> Check:
        async def check() -> bool:
            return len(self.consumers) == len(self.specs) and all(c.joined for c in self.consumers.values())

        return check

    def assignment(self, name: str) -> set[TopicPartition]:
        loop = self.consumers.get(name)
        return loop.assignment() if loop else set()


SETTINGS = web.AppKey("settings", ServiceSettings)
REGISTRY = web.AppKey("registry", CollectorRegistry)
HEALTH = web.AppKey("health", Health)
KAFKA = web.AppKey("kafka", Kafka)
TOPICS = web.AppKey("topics", Topics)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    report = await request.app[HEALTH].report()
    ready = all(report.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": report}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    settings: ServiceSettings,
    *,
    registry: CollectorRegistry | None = None,
    client_max_size: int = 1024**2,
) -> web.Application:
    """An application with the health and metrics routes and the typed shared state."""
    app = web.Application(client_max_size=client_max_size)
    app[SETTINGS] = settings
    app[REGISTRY] = registry or new_registry()
    app[HEALTH] = Health()
    app[TOPICS] = Topics(settings.topic_prefix)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    tune_gc(app, settings.gc_gen0_threshold)
    return app


def add_kafka(app: web.Application, *consumers: ConsumerSpec) -> Kafka:
    """Give the app a producer (and consumers), started and stopped with the app."""
    settings = app[SETTINGS]
    kafka_metrics = KafkaMetrics(app[REGISTRY])
    kafka = Kafka(
        settings=settings,
        topics=app[TOPICS],
        metrics=kafka_metrics,
        producer=RecordProducer(settings.kafka, metrics=kafka_metrics, client_id=f"{settings.service_name}-producer"),
    )
    for spec in consumers:
        kafka.consume(spec)
    app[KAFKA] = kafka
    app[HEALTH].add("broker", kafka.broker_ready)
    if consumers:
        app[HEALTH].add("consumers", kafka.consumers_ready())

    async def kafka_ctx(_app: web.Application) -> AsyncIterator[None]:
        await kafka.start()
        try:
            yield
        finally:
            await kafka.stop()

    app.cleanup_ctx.append(kafka_ctx)
    return kafka


def run_service(app: web.Application) -> None:
    """Run the app until SIGTERM or SIGINT, then drain gracefully; logs the masked settings first."""
    settings = app[SETTINGS]
    configure_logging(settings.log_level, settings.log_format, service=settings.service_name)
    log.info("starting", pid=os.getpid(), settings=settings.masked())
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=settings.shutdown_grace_seconds,
        print=None,
        access_log=None,
        handle_signals=True,
    )
    log.info("stopped")


@contextlib.asynccontextmanager
async def running_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on a real socket inside a test or a tool; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
