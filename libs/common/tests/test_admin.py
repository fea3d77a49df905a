"""``switchboard-admin`` as operators run it: a real process against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from switchboard.common.events import DeadLetter, InboundMessage, decode, encode
from switchboard.common.kafka import RecordProducer
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_all, sample_inbound
from switchboard.common.topics import Topics

pytestmark = pytest.mark.broker


async def admin(kafka: KafkaSettings, prefix: str, *args: str) -> tuple[int, str, str]:
    """Run ``switchboard-admin`` with the services' environment; (exit code, stdout, stderr)."""
    env = {
        **os.environ,
        "SWITCHBOARD_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SWITCHBOARD_KAFKA_PARTITIONS": "3",
        "SWITCHBOARD_KAFKA_REPLICATION_FACTOR": "1",
        "SWITCHBOARD_TOPIC_PREFIX": prefix,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.common.admin",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def letter(source: InboundMessage, topic: str, partition: int, offset: int, *, carried: bool = True) -> DeadLetter:
    return DeadLetter(
        tenant_id=source.tenant_id,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        consumer_group="g",
        source_key=source.key(),
        source_value=encode(source) if carried else None,
        error_type="ValueError",
        error="cannot route this one",
    )


async def test_create_topics_then_list_and_replay_dead_letters(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    code, out, _ = await admin(kafka_settings, topic_prefix, "create-topics")
    assert code == 0
    assert sorted(json.loads(out)["created"]) == sorted(topics.all())
    code, out, _ = await admin(kafka_settings, topic_prefix, "create-topics")
    assert (code, json.loads(out)["created"]) == (0, [])  # idempotent

    secret_text = "my card number is 4111 1111 1111 1111"
    acme = sample_inbound(1, tenant="acme", text=secret_text)
    globex = sample_inbound(2, tenant="globex")
    async with RecordProducer(kafka_settings) as producer:
        # the source of a letter that left it out (too large to carry) is still on its topic
        kept = await producer.send(topics.inbound, sample_inbound(3, tenant="acme"))
        await producer.send_many(
            [
                (topics.dlq, letter(acme, topics.inbound, 0, 7)),
                (topics.dlq, letter(globex, topics.dispatch, 1, 9)),
                (
                    topics.dlq,
                    letter(
                        sample_inbound(3, tenant="acme"), topics.inbound, kept.partition, kept.offset, carried=False
                    ),
                ),
            ]
        )

    code, out, _ = await admin(kafka_settings, topic_prefix, "dlq", "list")
    assert code == 0
    listed = [json.loads(line) for line in out.splitlines()]
    assert sorted(item["source"] for item in listed) == sorted(
        [f"{topics.inbound}:0:7", f"{topics.dispatch}:1:9", f"{topics.inbound}:{kept.partition}:{kept.offset}"]
    )
    assert secret_text not in out  # never the payload
    code, out, _ = await admin(kafka_settings, topic_prefix, "dlq", "list", "--tenant", "globex")
    assert [json.loads(line)["tenant_id"] for line in out.splitlines()] == ["globex"]

    code, out, _ = await admin(kafka_settings, topic_prefix, "dlq", "replay", "--source", topics.inbound)
    assert (code, json.loads(out)) == (0, {"replayed": 2, "not_replayed": []})
    # the inbound topic now holds the kept record, and the two replayed ones after it
    on_topic = [decode(r.value) for r in await consume_all(kafka_settings.bootstrap, topics.inbound)]
    ids = sorted(m.provider_message_id for m in on_topic if isinstance(m, InboundMessage))
    assert ids == ["m-1", "m-3", "m-3"]
    assert any(isinstance(m, InboundMessage) and m.text == secret_text for m in on_topic)
    assert await consume_all(kafka_settings.bootstrap, topics.dispatch) == []  # --source held it back


async def test_replaying_a_letter_whose_source_is_gone_reports_it_and_fails(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    code, _, _ = await admin(kafka_settings, topic_prefix, "create-topics")
    assert code == 0
    async with RecordProducer(kafka_settings) as producer:
        gone = letter(sample_inbound(4), topics.inbound, 0, 50, carried=False)  # nothing at that offset
        await producer.send(topics.dlq, gone)
        await producer.send(topics.dlq, letter(sample_inbound(5), topics.inbound, 0, 0))
    code, out, err = await admin(kafka_settings, topic_prefix, "dlq", "replay")
    assert code == 1
    assert json.loads(out) == {"replayed": 1, "not_replayed": [gone.id]}
    assert f"{topics.inbound}:0:50 is no longer on the broker" in err
