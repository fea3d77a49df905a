"""A demo burst through the real ingest services (dev profile settings, real sockets, real broker)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from switchboard.common.demo import (
    VIP_ATTRIBUTES,
    DemoTraffic,
    HttpSend,
    SmtpSend,
    demo_addresses,
    run_stream,
    send,
)
from switchboard.common.demo_profile import dev_profile, find_dev_paths, load_email_profile
from switchboard.common.events import InboundMessage, RecordCodec
from switchboard.common.runtime import KAFKA, running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume
from switchboard.common.topics import Topics
from switchboard.ingest_email.app import INGEST_EMAIL
from switchboard.ingest_email.app import build_app as build_email_app
from switchboard.ingest_email.settings import IngestEmailSettings
from switchboard.ingest_social.sdk import load_channels_config
from switchboard.ingest_social.service import build_app as build_social_app
from switchboard.ingest_social.settings import IngestSocialSettings

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Ingest:
    social_url: str
    smtp_port: int
    traffic: DemoTraffic


def _with_profile_env(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
async def ingest(
    kafka_settings: KafkaSettings, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Ingest]:
    """Both ingest services in this process, configured from the dev profile's variables."""
    paths = find_dev_paths([REPO])
    profile = dev_profile(paths)
    _with_profile_env(monkeypatch, profile["ingest_social"])
    social = build_social_app(
        IngestSocialSettings(
            kafka=kafka_settings, topic_prefix=topic_prefix, http_port=0, ingest_social_discover_plugins=False
        )
    )
    _with_profile_env(monkeypatch, profile["ingest_email"])
    email = build_email_app(
        IngestEmailSettings(kafka=kafka_settings, topic_prefix=topic_prefix, smtp_port=0, shutdown_grace_seconds=5)
    )
    async with AsyncExitStack() as stack:
        social_url = await stack.enter_async_context(running_app(social))
        await stack.enter_async_context(running_app(email))
        async with asyncio.timeout(30):
            await social[KAFKA].connected.wait()
            await email[KAFKA].connected.wait()
        smtp = email[INGEST_EMAIL].smtp
        assert smtp is not None
        assert paths.channels_file is not None
        assert paths.email_file is not None
        traffic = DemoTraffic(
            load_channels_config(paths.channels_file),
            demo_addresses(load_email_profile(paths.email_file)["recipients"]),
            social_url=social_url,
            seed=11,
        )
        yield Ingest(social_url, smtp.port, traffic)


async def read_inbound(kafka_settings: KafkaSettings, topic_prefix: str, count: int) -> list[InboundMessage]:
    records = await consume(kafka_settings.bootstrap, Topics(topic_prefix).inbound, count=count, timeout=30)
    assert len(records) == count
    codec = RecordCodec(InboundMessage)
    messages = [codec.decode_as(r.value, InboundMessage) for r in records]
    assert [r.key for r in records] == [m.tenant_id.encode() for m in messages]
    return messages


async def test_a_demo_burst_is_accepted_and_lands_on_inbound(
    ingest: Ingest, kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    items = ingest.traffic.take(30)  # the tour (24) and a random mix
    async with aiohttp.ClientSession() as http:
        results = [
            await send(item, http=http, social_url=ingest.social_url, smtp_host="127.0.0.1", smtp_port=ingest.smtp_port)
            for item in items
        ]
    assert [(r.item.label, r.status) for r in results if not r.ok] == []
    assert {r.status for r in results if isinstance(r.item, SmtpSend)} == {250}
    assert {r.status for r in results if isinstance(r.item, HttpSend)} == {200}

    messages = await read_inbound(kafka_settings, topic_prefix, len(items))
    assert Counter((m.tenant_id, m.channel.value) for m in messages) == Counter((i.tenant, i.channel) for i in items)
    names = {i.customer for i in items}
    assert {m.contact.display_name for m in messages if m.contact.display_name} <= names

    acme_mail = [m for m in messages if m.tenant_id == "acme" and m.channel.value == "email"]
    first = next(m for m in acme_mail if m.subject and not m.subject.startswith("Re: "))
    reply = next(m for m in acme_mail if m.subject == "Re: " + (first.subject or ""))
    assert first.provider_message_id in reply.references
    assert reply.thread_ref == first.thread_ref
    wa = [m for m in messages if m.tenant_id == "acme" and m.channel.value == "whatsapp"]
    assert wa[1].thread_ref == wa[0].thread_ref
    assert wa[0].provider_message_id in wa[1].references
    assert {m.language for m in messages if m.channel.value in ("telegram", "email")} >= {"es"}
    voice = [m for m in messages if m.channel.value == "voice"]
    assert voice
    assert all(m.text for m in voice)


async def test_the_paced_stream_reports_every_send(
    ingest: Ingest, kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    lines: list[str] = []
    results = await run_stream(
        ingest.traffic,
        rate=200,
        duration=0,
        social_url=ingest.social_url,
        smtp_host="127.0.0.1",
        smtp_port=ingest.smtp_port,
        out=lines.append,
    )
    assert len(results) == len(lines) == 24  # duration 0: the tour alone
    assert all(r.ok for r in results)
    assert all(" ok " in line for line in lines)
    await read_inbound(kafka_settings, topic_prefix, len(results))


def _sent_attributes(item: HttpSend) -> tuple[str, dict[str, object]]:
    """The provider message id an item becomes on inbound.v1, and the contact attributes it carried."""
    body = orjson.loads(item.body)
    if item.path.startswith("/v1/custom/"):
        data = body["data"]
        return data["id"], data["contact"].get("attributes", {})
    return f"{body['visitor_id']}:{body['message_id']}", body.get("attributes", {})


async def test_vip_customers_reach_inbound_with_the_attribute_the_vip_queue_matches(
    ingest: Ingest, kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    items = [i for i in ingest.traffic.take(60) if isinstance(i, HttpSend)]
    async with aiohttp.ClientSession() as http:
        results = [
            await send(item, http=http, social_url=ingest.social_url, smtp_host="127.0.0.1", smtp_port=ingest.smtp_port)
            for item in items
        ]
    assert [(r.item.label, r.status) for r in results if not r.ok] == []
    expected = dict(_sent_attributes(i) for i in items if i.path.split("/")[2] in ("webchat", "custom"))
    vip_ids = {pid for pid, attributes in expected.items() if attributes}
    assert len(vip_ids) >= 6  # the tour's VIPs (web chat for both tenants, the portal for acme) and their replies
    assert {v["tier"] for v in expected.values() if v} == {a["tier"] for a in VIP_ATTRIBUTES}

    messages = await read_inbound(kafka_settings, topic_prefix, len(items))
    on_the_wire = {m.provider_message_id: m for m in messages if m.provider in ("webchat", "custom")}
    assert set(on_the_wire) == set(expected)
    for pid, attributes in expected.items():
        assert on_the_wire[pid].contact.attributes == attributes, pid
    vip = [on_the_wire[pid] for pid in vip_ids]
    assert {(m.tenant_id, m.provider) for m in vip} == {("acme", "webchat"), ("acme", "custom"), ("globex", "webchat")}
    assert all(m.contact.attributes in VIP_ATTRIBUTES for m in vip)
    # no other message claims to be a VIP
    assert all(not m.contact.attributes for m in messages if m.provider_message_id not in vip_ids)
