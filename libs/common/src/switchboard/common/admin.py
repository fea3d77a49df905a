"""``switchboard-admin``: operator commands against the configured Kafka.

- ``create-topics``: create the contract topics that are missing (partitions, replication,
  compaction of ``router-state.v1``, retention of ``dlq.v1``).
- ``dlq list``: print the dead letters (source, offset, error; never the payload).
- ``dlq replay``: write dead letters' original records back to their source topics,
  optionally only those of one source topic or tenant. A dead letter that does not carry
  its source (it would have been over the record size limit) is replayed from the source
  topic itself, while retention keeps it there; one whose source is gone is reported and
  the command exits 1.

Connection settings come from the same ``SWITCHBOARD_KAFKA_*`` variables as the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from switchboard.common.events import DeadLetter, RecordCodec, SchemaError
from switchboard.common.kafka.producer import RecordProducer
from switchboard.common.settings import KafkaSettings, ServiceSettings
from switchboard.common.topics import Topics, ensure_topics


async def _dead_letters(kafka: KafkaSettings, topics: Topics, timeout: float) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        topics.dlq,
        **kafka.client_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=min(kafka.fetch_max_wait_ms, 100),
    )
    await consumer.start()
    codec = RecordCodec(DeadLetter)
    letters: list[DeadLetter] = []
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()) or _partitions(consumer, topics.dlq))
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        async with asyncio.timeout(timeout):
            while remaining:
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for record in records:
                        try:
                            letters.append(codec.decode_as(record.value, DeadLetter))
                        except (SchemaError, ValueError) as exc:
                            print(
                                f"skipping unreadable dead letter at {tp.partition}:{record.offset}: {exc}",
                                file=sys.stderr,
                            )
                    if records and records[-1].offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
    finally:
        await consumer.stop()
    return letters


async def _source_record(
    kafka: KafkaSettings, letter: DeadLetter, timeout: float
) -> ConsumerRecord[bytes, bytes] | None:
    """The dead letter's source record, read from its topic; None when it is no longer there."""
    tp = TopicPartition(letter.source_topic, letter.source_partition)
    consumer = AIOKafkaConsumer(
        **kafka.client_options(),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=min(kafka.fetch_max_wait_ms, 100),
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= letter.source_offset < end:
            return None  # deleted by retention (or never there)
        consumer.seek(tp, letter.source_offset)
        async with asyncio.timeout(timeout):
            while True:
                for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    if record.offset == letter.source_offset:
                        return record
                    if record.offset > letter.source_offset:
                        return None  # compacted away
    finally:
        await consumer.stop()


async def _replay(kafka: KafkaSettings, letters: list[DeadLetter], timeout: float) -> int:
    replayed: list[str] = []
    missing: list[str] = []
    async with RecordProducer(kafka) as producer:
        for letter in letters:
            key, value, headers = letter.source_key, letter.source_value, letter.source_headers
            if value is None:
                source = await _source_record(kafka, letter, timeout)
                if source is None or source.value is None:
                    print(
                        f"dead letter {letter.id}: its source {letter.source_topic}:{letter.source_partition}:"
                        f"{letter.source_offset} is no longer on the broker; not replayed",
                        file=sys.stderr,
                    )
                    missing.append(letter.id)
                    continue
                key, value, headers = source.key, source.value, tuple(source.headers or ())
            await producer.send_raw(letter.source_topic, key, value, headers)
            replayed.append(letter.id)
    print(json.dumps({"replayed": len(replayed), "not_replayed": missing}))
    return 1 if missing else 0


def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[Any]:
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    return tps


async def _main(args: argparse.Namespace) -> int:
    settings = ServiceSettings()
    kafka, topics = settings.kafka, Topics(settings.topic_prefix)
    if args.command == "create-topics":
        created = await ensure_topics(
            kafka, topics, partitions=args.partitions, replication_factor=args.replication_factor
        )
        print(json.dumps({"created": created, "topics": list(topics.all())}))
        return 0
    letters = await _dead_letters(kafka, topics, args.timeout)
    chosen = [
        letter
        for letter in letters
        if (args.source is None or letter.source_topic == args.source)
        and (args.tenant is None or letter.tenant_id == args.tenant)
    ]
    if args.dlq_command == "list":
        for letter in chosen:
            print(
                json.dumps(
                    {
                        "id": letter.id,
                        "tenant_id": letter.tenant_id,
                        "source": f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}",
                        "group": letter.consumer_group,
                        "error_type": letter.error_type,
                        "error": letter.error,
                        "attempts": letter.attempts,
                        "at": letter.created_at.isoformat(),
                    }
                )
            )
        return 0
    return await _replay(kafka, chosen, args.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard-admin", description="Switchboard operator commands")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-topics", help="create the missing contract topics")
    create.add_argument("--partitions", type=int, default=None)
    create.add_argument("--replication-factor", type=int, default=None)
    dlq = sub.add_parser("dlq", help="inspect or replay dead letters")
    dlq.add_argument("dlq_command", choices=["list", "replay"])
    dlq.add_argument("--source", help="only dead letters from this source topic")
    dlq.add_argument("--tenant", help="only dead letters of this tenant")
    dlq.add_argument("--timeout", type=float, default=30.0)
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
