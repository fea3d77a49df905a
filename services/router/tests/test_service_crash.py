"""A write failing between the changelog and the dispatches: the restore resends the outbox, once."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from switchboard.common.events import Channel, Dispatch, DispatchKind, decode
from switchboard.common.kafka import BrokerUnavailable, RawRecord, RecordProducer
from switchboard.common.runtime import KAFKA, REGISTRY
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_all, eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.api import ROUTER

from .test_service_broker import (  # type: ignore[import-not-found]
    agent,
    inbound,
    records,
    router,
    rules_file,
    settings_for,
)

__all__ = ["rules_file"]  # the fixture, shared with the broker tests

pytestmark = pytest.mark.broker


@pytest.mark.parametrize(
    ("outbox_max_bytes", "outboxes_per_step"),
    [(512 * 1024, 1), (1024, 2)],  # 1 KiB: a dispatch and its log entry go to two outbox records
    ids=["one-outbox", "split-outbox"],
)
async def test_crash_between_changelog_and_dispatches_resends_the_outbox(
    kafka_settings: KafkaSettings, topic_prefix: str, rules_file: Path, outbox_max_bytes: int, outboxes_per_step: int
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    settings = settings_for(kafka_settings, topic_prefix, rules_file, outbox_max_bytes=outbox_max_bytes)
    async with router(settings) as (app, _url), RecordProducer(kafka_settings) as producer:
        service = app[ROUTER]
        router_producer = app[KAFKA].producer
        original = router_producer.send_raw_many_soon
        failures: list[str] = []

        async def failing_send(items: Iterable[RawRecord]) -> None:
            records = list(items)
            if not failures and any(topic == topics.dispatch for topic, *_ in records):
                failures.append(topics.dispatch)  # the changelog (with the outbox) is already acknowledged
                raise BrokerUnavailable("simulated: broker lost after the changelog was written")
            await original(records)

        router_producer.send_raw_many_soon = failing_send  # type: ignore[method-assign]
        await producer.send(topics.agent_events, agent("ann", billing=5))
        await producer.send(topics.inbound, inbound(1, text="invoice"))
        await producer.send(topics.inbound, inbound(2, text="invoice"))
        dispatched = await records(kafka_settings.bootstrap, topics.dispatch, 2, Dispatch)
        await eventually(
            lambda: (
                (app[REGISTRY].get_sample_value("switchboard_router_outboxes_resent_total") or 0) >= outboxes_per_step
            ),
            timeout=30,
        )
        assert failures == [topics.dispatch]
        await eventually(lambda: service.restored.is_set(), timeout=30)
        # later input is applied on top of the restored state (ann's email capacity is 2, chat has room)
        await producer.send(topics.inbound, inbound(3, text="invoice", channel=Channel.CHAT))
        await records(kafka_settings.bootstrap, topics.dispatch, 3, Dispatch)
    decoded = [decode(r.value) for r in await consume_all(kafka_settings.bootstrap, topics.dispatch)]
    everything = [d for d in decoded if isinstance(d, Dispatch)]
    by_conversation: dict[str, set[str]] = {}
    for d in everything:
        assert d.kind is DispatchKind.ASSIGNMENT
        by_conversation.setdefault(d.conversation.conversation_id, set()).add(d.dispatch_id)
    # three conversations, each assigned by exactly one dispatch (a resend keeps its id)
    assert len(by_conversation) == 3
    assert all(len(ids) == 1 for ids in by_conversation.values())
    assert {d.dispatch_id for d in dispatched} <= {i for ids in by_conversation.values() for i in ids}
