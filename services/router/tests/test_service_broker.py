"""The router service on the real broker: records in, changelog then dispatches out, restore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from switchboard.common.events import (
    AgentUpserted,
    Channel,
    ContactHandle,
    ContactIdentity,
    DeliveryEndpoint,
    Dispatch,
    DispatchKind,
    EndpointKind,
    InboundMessage,
    Presence,
    Record,
    RecordCodec,
    RoutingLogEntry,
)
from switchboard.common.kafka import RecordProducer
from switchboard.common.runtime import REGISTRY, running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume, eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.api import ROUTER
from switchboard.router.app import build_app
from switchboard.router.changelog import read_partitions
from switchboard.router.rules import parse_rules
from switchboard.router.service import RouterService
from switchboard.router.settings import RouterSettings

pytestmark = pytest.mark.broker

CODEC = RecordCodec()

RULES = """
version: 1
options: {sticky_window: 1d, reopen_window: 1d, offline_grace: 1m}
tenants:
  acme:
    queues:
      - id: billing
        match: {keywords: [invoice]}
        skills: {billing: 3}
      - id: general
        match: {}
        mode: offer
        offer_timeout: 1s
  globex:
    queues:
      - id: general
        match: {}
"""


def settings_for(kafka: KafkaSettings, prefix: str, rules_file: Path, **extra: Any) -> RouterSettings:
    return RouterSettings(
        kafka=kafka,
        topic_prefix=prefix,
        rules_file=rules_file,
        consumer_group=f"router-{prefix}",
        http_host="127.0.0.1",
        http_port=0,
        rules_check_seconds=0.1,
        timer_resolution_ms=50,
        **extra,
    )


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


@asynccontextmanager
async def router(settings: RouterSettings) -> AsyncIterator[tuple[web.Application, str]]:
    app = build_app(settings)
    async with running_app(app) as url:
        await eventually(lambda: app[ROUTER].restored.is_set(), timeout=30)
        yield app, url


def agent(agent_id: str, tenant: str = "acme", **skills: int) -> AgentUpserted:
    return AgentUpserted(
        tenant_id=tenant,
        agent_id=agent_id,
        skills=skills,
        capacity={Channel.EMAIL: 2, Channel.CHAT: 1},
        presence=Presence.AVAILABLE,
        endpoints=(DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=f"https://desk.example.com/{agent_id}"),),
    )


def inbound(n: int, tenant: str = "acme", text: str = "hello", channel: Channel = Channel.EMAIL) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant,
        channel=channel,
        provider="smtp",
        provider_message_id=f"msg-{n}",
        thread_ref=f"thread-{n}",
        contact=ContactIdentity(handles=(ContactHandle(kind="email", value=f"customer{n}@example.com"),)),
        subject=f"subject {n}",
        text=text,
    )


async def records(bootstrap: str, topic: str, count: int, kind: type[Record]) -> list[Any]:
    raw = await consume(bootstrap, topic, count=count, timeout=30)
    decoded = [CODEC.decode(r.value) for r in raw]
    return [r for r in decoded if isinstance(r, kind)]


async def test_inbound_and_agents_in_dispatches_and_log_out(
    kafka_settings: KafkaSettings, topic_prefix: str, rules_file: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    settings = settings_for(kafka_settings, topic_prefix, rules_file)
    async with router(settings) as (app, url), RecordProducer(kafka_settings) as producer:
        await producer.send(topics.agent_events, agent("ann", billing=5))
        await producer.send(topics.inbound, inbound(1, text="my invoice is wrong"))
        dispatches = await records(kafka_settings.bootstrap, topics.dispatch, 1, Dispatch)
        assert dispatches[0].kind is DispatchKind.ASSIGNMENT
        assert dispatches[0].agent_id == "ann"
        conv_id = dispatches[0].conversation.conversation_id
        log = await records(kafka_settings.bootstrap, topics.routing_log, 1, RoutingLogEntry)
        assert log[0].conversation_id == conv_id
        conversation_url = f"{url}/v1/tenants/acme/conversations/{conv_id}"
        async with aiohttp.ClientSession() as http, http.get(conversation_url) as answer:
            assert answer.status == 200
            body = await answer.json()
        assert body["status"] == "assigned"
        assert body["queue_id"] == "billing"
        assert body["agent_id"] == "ann"
        assert body["explanation"][-1]["decision"] == "assigned"
        # the changelog holds the conversation, the agent and the position of the inputs
        service: RouterService = app[ROUTER]
        partition = service.partition_for("acme")
        states = await read_partitions(
            kafka_settings, topics.router_state, [partition], producer=producer, client_id="test"
        )
        kinds = sorted({r.kind for r in states[partition].records()})
        assert kinds == ["agent", "contact", "conversation"]
        assert states[partition].position[topics.inbound] >= 1
        assert states[partition].outboxes == {}  # tombstoned once the dispatches were acknowledged


async def test_offer_timeout_fires_without_further_input(
    kafka_settings: KafkaSettings, topic_prefix: str, rules_file: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    settings = settings_for(kafka_settings, topic_prefix, rules_file)
    async with router(settings), RecordProducer(kafka_settings) as producer:
        await producer.send(topics.agent_events, agent("bob"))
        await producer.send(topics.agent_events, agent("cy"))
        await producer.send(topics.inbound, inbound(2))
        # general offers with a 1 s timeout: the first offer expires and goes to the other agent
        offers = await records(kafka_settings.bootstrap, topics.dispatch, 3, Dispatch)
        kinds = [(d.kind, d.agent_id) for d in offers]
        first = offers[0].agent_id
        assert kinds[0] == (DispatchKind.OFFER, first)
        assert (DispatchKind.OFFER_WITHDRAWN, first) in kinds[1:]
        second = {"bob", "cy"} - {first}
        assert (DispatchKind.OFFER, second.pop()) in kinds[1:]


async def test_rules_reload_and_invalid_file_keeps_old_rules(
    kafka_settings: KafkaSettings, topic_prefix: str, rules_file: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    settings = settings_for(kafka_settings, topic_prefix, rules_file)
    async with router(settings) as (app, url):
        service: RouterService = app[ROUTER]
        registry = app[REGISTRY]
        new_rules = RULES.replace("globex:", "initech:\n    queues: [{id: q, match: {}}]\n  globex:")
        await asyncio.to_thread(rules_file.write_text, new_rules)
        await eventually(lambda: service.engine.rules.tenant("initech") is not None)
        invalid = "version: 1\ntenants:\n  acme:\n    queues: [{id: x, strategy: nonsense}]\n"
        await asyncio.to_thread(rules_file.write_text, invalid)
        await eventually(
            lambda: registry.get_sample_value("switchboard_router_rules_reloads_total", {"result": "invalid"}) == 1
        )
        assert registry.get_sample_value("switchboard_router_rules_file_valid") == 0
        assert service.engine.rules.tenant("initech") is not None  # the last valid rules stay
        async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/tenants") as answer:
            listed = {t["tenant"] for t in (await answer.json())["tenants"]}
        assert listed == {"acme", "globex", "initech"}


def test_rules_fixture_parses() -> None:
    assert sorted(parse_rules(RULES).tenants) == ["acme", "globex"]


async def test_restart_restores_state_and_resumes_timers(
    kafka_settings: KafkaSettings, topic_prefix: str, rules_file: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    settings = settings_for(kafka_settings, topic_prefix, rules_file)
    async with router(settings) as (app, _url), RecordProducer(kafka_settings) as producer:
        await producer.send(topics.agent_events, agent("dee", billing=4))
        for n in range(5):
            await producer.send(topics.inbound, inbound(10 + n, text="invoice question"))
        await records(kafka_settings.bootstrap, topics.dispatch, 2, Dispatch)  # capacity 2 on email
        service: RouterService = app[ROUTER]
        await eventually(lambda: len(service.engine.waiting("acme", "billing")) == 3)
    # a new instance restores everything from the changelog
    async with router(settings) as (app, _url), RecordProducer(kafka_settings) as producer:
        service = app[ROUTER]
        assert len(service.engine.waiting("acme", "billing")) == 3
        dee = service.engine.agent("acme", "dee")
        assert dee is not None
        assert dee.load[Channel.EMAIL] == 2
        # a duplicate of an inbound message already applied changes nothing
        await producer.send(topics.inbound, inbound(10, text="invoice question"))
        await producer.send(topics.agent_events, agent("eve", billing=4))
        await eventually(lambda: len(service.engine.waiting("acme", "billing")) == 1)
    dispatched = await records(kafka_settings.bootstrap, topics.dispatch, 4, Dispatch)
    assigned = [d.conversation.conversation_id for d in dispatched if d.kind is DispatchKind.ASSIGNMENT]
    assert len(assigned) == len(set(assigned)) == 4  # never the same conversation twice
