"""The router as a Kafka Streams-like processor around the pure :class:`RouterEngine`.

One consumer group reads ``inbound.v1``, ``agent-events.v1`` and ``delivery.v1``. The
range assignor gives an instance the same partition numbers of all three, and a tenant
always lands on one partition number, so the instance that owns partition *p* owns the
whole state of the tenants on *p* (their conversations, agents, contacts and timers).

Per poll (:meth:`RouterService.handle` for each record, then :meth:`end_batch`):

1. every record is applied to the engine; its effects are collected per partition;
2. due timers fire (offer timeouts, SLA escalations, relaxation steps, offline grace),
   and new rules, if the file changed, are put in force;
3. per partition, the step's outbox, then the changed entities, then the input position
   go to ``router-state.v1`` (that partition), and are acknowledged;
4. then the dispatches (``dispatch.v1``) and routing-log entries, acknowledged;
5. then the outbox is tombstoned, and the consumer loop commits the input offsets.

A crash anywhere loses nothing and assigns nothing twice: see
:mod:`switchboard.router.changelog` for how a restore resumes. On assignment the
partitions that are new to this instance (or whose committed offsets moved on without
it) are restored from the changelog before any of their input is consumed; partitions
that stay keep their state; partitions that go are forgotten.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition

from switchboard.common.events import (
    Dispatch,
    DispatchKind,
    InboundMessage,
    RoutingDecision,
    RoutingLogEntry,
    new_id,
)
from switchboard.common.kafka import BrokerUnavailable, ConsumerLoop, Message, RawRecord, RecordProducer
from switchboard.common.logging import get_logger
from switchboard.common.settings import KafkaSettings
from switchboard.common.topics import Topics
from switchboard.router.changelog import (
    OUTBOX_MAX_BYTES,
    Outbox,
    PartitionState,
    encode_position,
    outbox_key,
    position_key,
    read_partitions,
)
from switchboard.router.engine import Effects, RouterEngine
from switchboard.router.metrics import RouterMetrics
from switchboard.router.ownership import OwnerDirectory, partition_of
from switchboard.router.rules import Rules
from switchboard.router.snapshot import StateEntity, StateRecord, encode_entity

__all__ = ["Explanations", "RouterService"]

log = get_logger(__name__)

_ESCALATION_DECISIONS = frozenset({RoutingDecision.ESCALATED, RoutingDecision.SLA_BREACHED, RoutingDecision.RELAXED})


class Explanations:
    """The latest routing-log entries of recently touched conversations (bounded), for the API."""

    def __init__(self, conversations: int, per_conversation: int = 12, escalations: int = 100) -> None:
        self._max = conversations
        self._per = per_conversation
        self._entries: OrderedDict[tuple[str, str], deque[RoutingLogEntry]] = OrderedDict()
        self._escalations: dict[str, deque[RoutingLogEntry]] = {}
        self._escalations_max = escalations

    def add(self, entry: RoutingLogEntry) -> None:
        key = (entry.tenant_id, entry.conversation_id)
        entries = self._entries.get(key)
        if entries is None:
            entries = self._entries[key] = deque(maxlen=self._per)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        entries.append(entry)
        if entry.decision in _ESCALATION_DECISIONS:
            self._escalations.setdefault(entry.tenant_id, deque(maxlen=self._escalations_max)).append(entry)

    def of(self, tenant_id: str, conversation_id: str) -> list[RoutingLogEntry]:
        return list(self._entries.get((tenant_id, conversation_id), ()))

    def escalations(self, tenant_id: str) -> list[RoutingLogEntry]:
        return list(reversed(self._escalations.get(tenant_id, ())))

    def forget(self, tenants: Iterable[str]) -> None:
        gone = set(tenants)
        for key in [k for k in self._entries if k[0] in gone]:
            del self._entries[key]
        for tenant in gone:
            self._escalations.pop(tenant, None)


@dataclass
class _Step:
    """Effects collected for one partition since the last write.

    ``state`` keeps each changed entity (``None`` once gone) by its changelog key; its
    record is built and encoded only when written, from the entity as it is then: an
    entity touched by several records of a batch (a conversation and its follow-ups, an
    agent taking work) is built and encoded once, not once per record.
    """

    state: dict[str, StateEntity | None] = field(default_factory=dict)
    dispatches: list[Dispatch] = field(default_factory=list)
    log: list[RoutingLogEntry] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    received: list[datetime] = field(default_factory=list)


class RouterService:
    """Feeds the engine from Kafka and writes its effects back; owns partition state."""

    def __init__(
        self,
        *,
        rules: Rules,
        kafka: KafkaSettings,
        topics: Topics,
        producer: RecordProducer,
        metrics: RouterMetrics,
        directory: OwnerDirectory,
        explanations: Explanations,
        client_id: str = "router",
        restore_fetch_max_bytes: int = 16 * 1024**2,
        outbox_max_bytes: int = OUTBOX_MAX_BYTES,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = RouterEngine(rules, self.clock)
        self.kafka = kafka
        self.topics = topics
        self.producer = producer
        self.metrics = metrics
        self.directory = directory
        self.explanations = explanations
        self.client_id = client_id
        self.restore_fetch_max_bytes = restore_fetch_max_bytes
        self.outbox_max_bytes = outbox_max_bytes
        self.inputs = (topics.inbound, topics.agent_events, topics.delivery)
        self.loop: ConsumerLoop | None = None
        self.owned: set[int] = set()
        self.partitions = kafka.partitions
        self._wall_clock = wall_clock
        self._now: datetime | None = None
        self._tenant_partition: dict[str, int] = {}
        self._positions: dict[int, dict[str, int]] = {}
        self._steps: dict[int, _Step] = {}
        self._poisoned = False
        self._new_rules: Rules | None = None
        self.restored = asyncio.Event()

    # ------------------------------------------------------------------ the engine's clock

    def clock(self) -> datetime:
        """The engine's clock: one fixed instant for the whole of each engine call."""
        return self._now if self._now is not None else self._wall_clock()

    # ------------------------------------------------------------------ ownership

    def partition_for(self, tenant_id: str) -> int:
        known = self._tenant_partition.get(tenant_id)
        return known if known is not None else partition_of(tenant_id, self.partitions)

    def owns(self, tenant_id: str) -> bool:
        return self.partition_for(tenant_id) in self.owned

    def owner_url(self, tenant_id: str) -> str | None:
        return self.directory.owner_of(self.partition_for(tenant_id))

    def _forget_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        tenants = [t for t, p in self._tenant_partition.items() if p in gone]
        self.engine.forget_tenants(tenants)
        self.explanations.forget(tenants)
        for tenant in tenants:
            del self._tenant_partition[tenant]
        for p in gone:
            self._positions.pop(p, None)
            self._steps.pop(p, None)
        self.owned -= gone

    # ------------------------------------------------------------------ processing

    def set_rules(self, rules: Rules) -> None:
        """Put new (validated) rules in force at the end of the current batch."""
        self._new_rules = rules

    async def handle(self, message: Message) -> None:
        """Apply one input record (the consumer loop's handler)."""
        record = message.record
        self._tenant_partition.setdefault(record.tenant_id, message.partition)
        self._now = self._wall_clock()
        try:
            if self._due(self._now):
                self._collect(self.engine.advance(self._now))
            fx = self.engine.handle(record)  # a RoutingError goes to the dead-letter topic
        finally:
            self._now = None
        self._collect(fx)
        step = self._step(message.partition)
        step.position[message.topic] = message.offset + 1
        if isinstance(record, InboundMessage) and fx.dispatches:
            step.received.append(record.received_at)

    def _due(self, now: datetime) -> bool:
        deadline = self.engine.next_deadline()
        return deadline is not None and deadline <= now

    def _step(self, partition: int) -> _Step:
        step = self._steps.get(partition)
        if step is None:
            step = self._steps[partition] = _Step()
        return step

    def _collect(self, fx: Effects) -> None:
        """File effects under the partition of their tenant."""
        for key, entity in fx.state.items():
            tenant = key.split("/", 1)[0]
            self._step(self.partition_for(tenant)).state[key] = entity
        for dispatch in fx.dispatches:
            self._step(self.partition_for(dispatch.tenant_id)).dispatches.append(dispatch)
        for entry in fx.log:
            self._step(self.partition_for(entry.tenant_id)).log.append(entry)
            self.explanations.add(entry)

    async def end_batch(self) -> None:
        """After each poll: fire due timers, apply new rules, then write everything collected."""
        if self._poisoned:
            raise BrokerUnavailable("router state is ahead of its changelog after a failed write; restarting")
        now = self._wall_clock()
        rules, self._new_rules = self._new_rules, None
        self._now = now
        try:
            if rules is not None:
                self._collect(self.engine.replace_rules(rules))
                log.info("rules in force", tenants=sorted(rules.tenants))
            if self._due(now):
                self._collect(self.engine.advance(now))
        finally:
            self._now = None
        if self._steps:
            await self._write()

    async def _write(self) -> None:
        steps, self._steps = self._steps, {}
        started = time.perf_counter()
        state_topic = self.topics.router_state
        outboxes: list[tuple[int, bytes, Outbox]] = []
        try:
            # 1. The changelog: outbox first, entities, then the input position.
            changelog: list[RawRecord] = []
            for partition, step in steps.items():
                for outbox in Outbox.split(step.dispatches, step.log, self.outbox_max_bytes):
                    key = outbox_key(partition, new_id())
                    changelog.append((state_topic, key, outbox.encode(), partition))
                    outboxes.append((partition, key, outbox))
                changelog.extend(
                    (state_topic, key.encode("utf-8"), encode_entity(key, entity), partition)
                    for key, entity in step.state.items()
                )
                if step.position:
                    position = self._positions.setdefault(partition, {})
                    position.update(step.position)
                    changelog.append((state_topic, position_key(partition), encode_position(position), partition))
            await self.producer.send_raw_many_soon(changelog)
            await self.producer.flush()
            # 2. The outputs, only once the state that produced them is durable: the bytes the
            #    outbox holds (encoded once), keyed by tenant like any record.
            await self.producer.send_raw_many_soon(self._outputs(outbox for _, _, outbox in outboxes))
            await self.producer.flush()
            # 3. The outboxes are done (their tombstones are flushed with the input commit).
            tombstones = ((state_topic, key, None, partition) for partition, key, _ in outboxes)
            await self.producer.send_raw_many_soon(tombstones)
        except BaseException:
            self._poisoned = True
            raise
        done = self._wall_clock()
        # counted per batch, then added per label: a labelled child costs a lookup per call
        kinds = Counter(dispatch.kind for step in steps.values() for dispatch in step.dispatches)
        decisions = Counter(entry.decision for step in steps.values() for entry in step.log)
        for step in steps.values():
            for received in step.received:
                self.metrics.assignment_latency.observe(max(0.0, (done - received).total_seconds()))
        for kind, count in kinds.items():
            self.metrics.dispatches.labels(kind.value).inc(count)
        if kinds[DispatchKind.SLA_WARNING]:
            self.metrics.sla_warnings.inc(kinds[DispatchKind.SLA_WARNING])
        for decision, count in decisions.items():
            self.metrics.decisions.labels(decision.value).inc(count)
        if decisions[RoutingDecision.SLA_BREACHED]:
            self.metrics.sla_breaches.inc(decisions[RoutingDecision.SLA_BREACHED])
        self.metrics.step_seconds.observe(time.perf_counter() - started)

    # ------------------------------------------------------------------ rebalancing

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """The consumer loop has committed; state is kept until the new assignment is known."""
        self.restored.clear()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Forget partitions that went, restore the ones that came, then position the inputs."""
        loop = self.loop
        numbers = {tp.partition for tp in assigned if tp.topic in self.inputs}
        missing = sorted(
            f"{topic}:{p}" for p in numbers for topic in self.inputs if TopicPartition(topic, p) not in assigned
        )
        if missing:
            log.error("input topics are not co-partitioned; check their partition counts", missing=missing)
        if self._poisoned:
            self._forget_partitions(set(self.owned))
            self._steps.clear()
            self._poisoned = False
        self._forget_partitions(self.owned - numbers)
        to_restore = numbers - self.owned
        for p in numbers & self.owned:
            if loop is not None and await self._moved_on(loop, p):
                to_restore.add(p)
        if to_restore:
            self._forget_partitions(to_restore)
            try:
                await self._restore(sorted(to_restore))
            except Exception:
                self._poisoned = True  # the next batch end restarts the consumer, which restores again
                log.exception("restore failed", partitions=sorted(to_restore))
                return
        self.owned = numbers
        self.metrics.owned_partitions.set(len(numbers))
        if loop is not None:
            for p in numbers:
                for topic in self.inputs:
                    tp = TopicPartition(topic, p)
                    applied = self._positions.get(p, {}).get(topic)
                    if applied is None:
                        continue  # nothing of this input is in the state yet: the committed offset holds
                    committed = await loop.committed(tp)
                    if committed != applied:
                        # The changelog says what the state reflects: resume exactly there, neither
                        # applying input twice (commit behind) nor skipping any (commit ahead).
                        if committed is not None and committed > applied:
                            log.warning(
                                "committed offset ahead of the state; re-reading",
                                topic=topic,
                                partition=p,
                                committed=committed,
                                applied=applied,
                            )
                        loop.seek(tp, applied)
        self.restored.set()

    async def _moved_on(self, loop: ConsumerLoop, partition: int) -> bool:
        """True when another instance processed this partition since this one last did."""
        mine = self._positions.get(partition, {})
        for topic in self.inputs:
            committed = await loop.committed(TopicPartition(topic, partition))
            if committed is not None and committed > mine.get(topic, 0):
                return True
        return False

    async def _restore(self, partitions: list[int]) -> None:
        started = time.perf_counter()
        states = await read_partitions(
            self.kafka,
            self.topics.router_state,
            partitions,
            producer=self.producer,
            client_id=f"{self.client_id}-restore",
            fetch_max_bytes=self.restore_fetch_max_bytes,
        )
        tenants = 0
        for p, state in states.items():
            tenants += self._load(state)
            self._positions[p] = dict(state.position)
            self.metrics.restored_records.inc(state.read)
        resent = await self._resend(states)
        if resent:
            self.metrics.outboxes_resent.inc(resent)
        elapsed = time.perf_counter() - started
        self.metrics.restore_seconds.observe(elapsed)
        log.info(
            "partitions restored",
            partitions=partitions,
            records=sum(s.read for s in states.values()),
            tenants=tenants,
            outboxes_resent=resent,
            seconds=round(elapsed, 3),
        )

    def _load(self, state: PartitionState) -> int:
        """Restore one partition's entities, decoded one by one; the number of tenants loaded."""
        rules = self.engine.rules
        loaded: set[str] = set()
        dropped: set[str] = set()

        def known() -> Iterator[StateRecord]:
            for record in state.records():
                tenant = record.tenant_id
                if tenant in loaded:
                    yield record
                elif tenant in dropped:
                    continue
                elif rules.tenant(tenant) is None:
                    dropped.add(tenant)
                else:
                    loaded.add(tenant)
                    self._tenant_partition[tenant] = state.partition
                    yield record

        self.engine.restore(known())
        if dropped:
            log.warning("changelog state of tenants not in the rules is kept but not loaded", tenants=sorted(dropped))
        return len(loaded)

    def _outputs(self, outboxes: Iterable[Outbox]) -> Iterator[RawRecord]:
        """The outboxes' dispatches and routing-log entries as records, each keyed by its tenant."""
        dispatch, routing_log = self.topics.dispatch, self.topics.routing_log
        for outbox in outboxes:
            tenants = iter(outbox.tenants)
            for raw in outbox.dispatches:
                tenant = next(tenants, None)
                yield dispatch, tenant.encode() if tenant else None, raw, None
            for raw in outbox.log:
                tenant = next(tenants, None)
                yield routing_log, tenant.encode() if tenant else None, raw, None

    async def _resend(self, states: dict[int, PartitionState]) -> int:
        """Send the outputs of unfinished steps again (same ids: receivers deduplicate), then close them.

        An outbox is tombstoned only after its records are acknowledged: if this fails, the
        next restore finds the outbox again.
        """
        done = [(p, key, outbox) for p, state in states.items() for key, outbox in state.outboxes.items()]
        if not done:
            return 0
        await self.producer.send_raw_many_soon(self._outputs(outbox for _, _, outbox in done))
        await self.producer.flush()
        state_topic = self.topics.router_state
        await self.producer.send_raw_many_soon((state_topic, key, None, partition) for partition, key, _ in done)
        await self.producer.flush()
        return len(done)
