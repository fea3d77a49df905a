"""``switchboard-admin``: operator commands against the configured Kafka.

- ``create-topics``: create the contract topics that are missing (partitions, replication,
  compaction of ``router-state.v1``, retention of ``dlq.v1``).
- ``dlq list``: print the dead letters (source, offset, error; never the payload).
- ``dlq replay``: write dead letters' original records back to their source topics,
  optionally only those of one source topic or tenant.

Connection settings come from the same ``SWITCHBOARD_KAFKA_*`` variables as the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

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


def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[Any]:
    from aiokafka import TopicPartition

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
    async with RecordProducer(kafka) as producer:
        for letter in chosen:
            await producer.send_raw(letter.source_topic, letter.source_key, letter.source_value, letter.source_headers)
    print(json.dumps({"replayed": len(chosen)}))
    return 0


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
