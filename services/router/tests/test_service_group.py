"""Two router instances in one group split the tenants, answer for each other, and take over with state."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from switchboard.common.broker import free_port
from switchboard.common.events import Dispatch
from switchboard.common.kafka import RecordProducer
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.api import ROUTER
from switchboard.router.app import build_app
from switchboard.router.service import RouterService

from .test_service_broker import agent, inbound, records, settings_for  # type: ignore[import-not-found]

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TENANTS = [f"t{n}" for n in range(8)]
RULES = "version: 1\ntenants:\n" + "".join(f"  {t}:\n    queues: [{{id: general, match: {{}}}}]\n" for t in TENANTS)


async def test_two_instances_split_tenants_proxy_reads_and_take_over(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    ports = [free_port(), free_port()]
    apps = [
        build_app(settings_for(kafka_settings, topic_prefix, rules_file, advertised_url=f"http://127.0.0.1:{port}"))
        for port in ports
    ]
    services: list[RouterService] = [app[ROUTER] for app in apps]
    async with running_app(apps[0], port=ports[0]) as url_a, RecordProducer(kafka_settings) as producer:
        await eventually(lambda: services[0].restored.is_set(), timeout=30)
        async with running_app(apps[1], port=ports[1]) as url_b:
            # both own part of the partitions, together all of them
            await eventually(
                lambda: (
                    all(s.restored.is_set() and s.owned for s in services)
                    and services[0].owned.isdisjoint(services[1].owned)
                    and len(services[0].owned | services[1].owned) == kafka_settings.partitions
                ),
                timeout=60,
            )
            owner_of = {t: 0 if services[0].owns(t) else 1 for t in TENANTS}
            assert set(owner_of.values()) == {0, 1}, owner_of  # the tenants are spread over both
            for tenant in TENANTS:
                await producer.send(topics.agent_events, agent(f"agent-{tenant}", tenant=tenant))
                await producer.send(topics.inbound, inbound(1, tenant=tenant))
            dispatched = await records(kafka_settings.bootstrap, topics.dispatch, len(TENANTS), Dispatch)
            conversations = {d.tenant_id: d.conversation.conversation_id for d in dispatched}
            assert sorted(conversations) == TENANTS
            for tenant, index in owner_of.items():
                engine = services[index].engine
                await eventually(lambda e=engine, t=tenant: e.conversation(t, conversations[t]) is not None)
                assert services[1 - index].engine.conversation(tenant, conversations[tenant]) is None
            # a read at the instance that does not own the tenant is answered by the owner
            tenant_b = next(t for t, i in owner_of.items() if i == 1)
            async with aiohttp.ClientSession() as http:
                path = f"/v1/tenants/{tenant_b}/conversations/{conversations[tenant_b]}"
                async with http.get(url_a + path) as answer:
                    assert answer.status == 200
                    assert answer.headers["X-Switchboard-Owner"] == url_b
                    assert (await answer.json())["agent_id"] == f"agent-{tenant_b}"
        # B stopped: A takes over B's partitions and restores their state from the changelog
        await eventually(lambda: len(services[0].owned) == kafka_settings.partitions, timeout=60)
        await eventually(lambda: services[0].restored.is_set(), timeout=30)
        for tenant in TENANTS:
            conv = services[0].engine.conversation(tenant, conversations[tenant])
            assert conv is not None, tenant
            assert conv.agent_id == f"agent-{tenant}"
            held = services[0].engine.agent(tenant, f"agent-{tenant}")
            assert held is not None
            assert sum(held.load.values()) == 1
