"""The router's changelog (``router-state.v1``): entity records plus two control records.

Besides one record per agent, contact and conversation (``tenant/kind/id``, see
:mod:`switchboard.router.snapshot`), each changelog partition carries:

- ``~outbox/<partition>/<id>``: the dispatches and routing-log entries of one processing
  step, written *before* the step's entity records and tombstoned once the dispatches
  are acknowledged. A restore finds the outboxes that were not tombstoned (the instance
  died between writing state and writing its dispatches) and sends them again with
  their original dispatch ids, which every receiver deduplicates.
- ``~position/<partition>``: the input offsets the changelog reflects, written *after*
  the step's entity records. A restore starts consuming at the later of this position
  and the group's committed offset, so no input is applied twice to restored state.

- ``~fence/<partition>``: written by a restore before it reads, and read up to. A restore
  ends at its own fence rather than at the partition's reported end offset, so it sees
  every record written before it started even where a broker reports a stale end offset
  (the embedded broker does, after a producer died mid-write).

Within one partition Kafka keeps the order of writes from one producer, so a position
that landed implies the entity records before it landed, and entity records that landed
imply their outbox landed. Tenant ids never start with ``~``, so the keys cannot clash.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from switchboard.common.events import Dispatch, RoutingLogEntry, encode, new_id
from switchboard.common.kafka import RecordProducer
from switchboard.common.logging import get_logger
from switchboard.common.settings import KafkaSettings
from switchboard.router.snapshot import AgentRecord, ContactRecord, ConversationRecord, decode_state

__all__ = ["OUTBOX_MAX_BYTES", "Outbox", "PartitionState", "outbox_key", "position_key", "read_partitions"]

log = get_logger(__name__)

StateRecord = AgentRecord | ContactRecord | ConversationRecord
OUTBOX_PREFIX = "~outbox/"
POSITION_PREFIX = "~position/"
FENCE_PREFIX = "~fence/"


def outbox_key(partition: int, step_id: str) -> bytes:
    return f"{OUTBOX_PREFIX}{partition}/{step_id}".encode()


def fence_key(partition: int) -> bytes:
    return f"{FENCE_PREFIX}{partition}".encode()


def position_key(partition: int) -> bytes:
    return f"{POSITION_PREFIX}{partition}".encode()


OUTBOX_MAX_BYTES = 512 * 1024
"""An outbox record's size at most (its records' bytes, JSON-escaped). A broker's
``message.max.bytes`` and the producer's ``max_request_size`` are 1 MiB by default; one
step can hold far more output than that (a batch of 500 messages, a rules reload that
re-routes thousands of queued conversations, the timers of a long outage), so a step's
output is written as as many outbox records as it needs."""


@dataclass
class Outbox:
    """The output of one processing step (or of a part of one), as encoded records."""

    dispatches: list[bytes] = field(default_factory=list)
    log: list[bytes] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)

    @classmethod
    def split(
        cls, dispatches: Sequence[Dispatch], entries: Sequence[RoutingLogEntry], max_bytes: int = OUTBOX_MAX_BYTES
    ) -> list[Outbox]:
        """The step's output as outboxes of at most about ``max_bytes`` each, in order:
        sent (and resent) one after the other, they keep every conversation's order. A
        record larger than ``max_bytes`` alone gets an outbox of its own."""
        parts: list[Outbox] = []
        current, size = cls(), 0
        for kind, records in ((0, dispatches), (1, entries)):
            for record in records:
                raw = encode(record)
                # as a JSON string in the outbox: every quote and backslash gains an escape
                cost = len(raw) + raw.count(b'"') + raw.count(b"\\") + 4
                if size + cost > max_bytes and (current.dispatches or current.log):
                    parts.append(current)
                    current, size = cls(), 0
                (current.dispatches if kind == 0 else current.log).append(raw)
                current.tenants.append(record.tenant_id)
                size += cost
        if current.dispatches or current.log:
            parts.append(current)
        return parts

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "schema": "router-outbox/v1",
                "dispatches": [d.decode("utf-8") for d in self.dispatches],
                "log": [e.decode("utf-8") for e in self.log],
                "tenants": self.tenants,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Outbox:
        data = json.loads(raw)
        return cls(
            dispatches=[d.encode("utf-8") for d in data.get("dispatches", [])],
            log=[e.encode("utf-8") for e in data.get("log", [])],
            tenants=list(data.get("tenants", [])),
        )


def encode_position(offsets: dict[str, int]) -> bytes:
    return json.dumps({"schema": "router-position/v1", "offsets": offsets}, separators=(",", ":")).encode()


@dataclass
class PartitionState:
    """What a restore read from one changelog partition.

    Entity records stay encoded until :meth:`records` decodes them one at a time, so a
    restore never holds every decoded record next to the state it builds from them.
    """

    partition: int
    raw_records: list[bytes] = field(default_factory=list)
    outboxes: dict[bytes, Outbox] = field(default_factory=dict)
    position: dict[str, int] = field(default_factory=dict)
    read: int = 0
    undecodable: int = 0

    def records(self) -> Iterator[StateRecord]:
        """The entity records, decoded as they are taken; undecodable ones are counted and skipped."""
        skipped = 0
        for raw in self.raw_records:
            try:
                yield decode_state(raw)
            except ValidationError:
                skipped += 1
        if skipped:
            self.undecodable += skipped
            log.error("undecodable changelog records skipped", partition=self.partition, count=skipped)


def _fold(partition: int, latest: dict[bytes, bytes | None], read: int) -> PartitionState:
    state = PartitionState(partition=partition, read=read)
    for key, value in latest.items():
        if value is None:
            continue
        if key.startswith(OUTBOX_PREFIX.encode()):
            try:
                state.outboxes[key] = Outbox.decode(value)
            except (ValueError, AttributeError):
                state.undecodable += 1
        elif key.startswith(FENCE_PREFIX.encode()):
            continue
        elif key.startswith(POSITION_PREFIX.encode()):
            try:
                offsets = json.loads(value).get("offsets", {})
                state.position = {str(t): int(o) for t, o in offsets.items()}
            except (ValueError, AttributeError, TypeError):
                state.undecodable += 1
        else:
            state.raw_records.append(value)
    if state.undecodable:
        log.error("undecodable changelog control records skipped", partition=partition, count=state.undecodable)
    return state


async def read_partitions(
    kafka: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    *,
    producer: RecordProducer,
    client_id: str,
    fetch_max_bytes: int = 16 * 1024**2,
) -> dict[int, PartitionState]:
    """Read changelog partitions from the start up to a fence written now; the latest value per key wins."""
    wanted = sorted(set(partitions))
    if not wanted:
        return {}
    fence = new_id().encode()
    fence_offsets: dict[int, int] = {}
    for p in wanted:
        written = await producer.send_raw(topic, fence_key(p), fence, partition=p)
        fence_offsets[p] = written.offset
    consumer = AIOKafkaConsumer(
        **kafka.client_options(),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        fetch_max_bytes=fetch_max_bytes,
        max_partition_fetch_bytes=fetch_max_bytes,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in wanted}
        read: dict[int, int] = dict.fromkeys(wanted, 0)
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=100_000)
            for tp, records in batch.items():
                bucket = latest[tp.partition]
                for record in records:
                    if record.offset >= fence_offsets[tp.partition]:
                        remaining.discard(tp)
                        consumer.pause(tp)
                        break
                    if record.key is not None:
                        bucket[record.key] = record.value
                    read[tp.partition] += 1
            await asyncio.sleep(0)
        return {p: _fold(p, latest[p], read[p]) for p in wanted}
    finally:
        await consumer.stop()
