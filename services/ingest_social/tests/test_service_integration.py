"""The running service over real HTTP with a real broker: what a signed webhook puts on inbound.v1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import aiohttp
import orjson
import pytest

from switchboard.common.broker import EmbeddedBroker
from switchboard.common.events import Channel, InboundMessage, RecordCodec
from switchboard.common.kafka.producer import RecordProducer
from switchboard.common.runtime import KAFKA, running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume
from switchboard.common.topics import Topics
from switchboard.ingest_social.kafka_publisher import KafkaPublisher
from switchboard.ingest_social.sdk import AdapterConfig, ChannelsConfig, TenantConfig
from switchboard.ingest_social.service import build_app
from switchboard.ingest_social.settings import IngestSocialSettings

pytestmark = pytest.mark.broker

WHATSAPP = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "1",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1065"},
                        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "16315551234"}],
                        "messages": [
                            {
                                "from": "16315551234",
                                "id": "wamid.A1",
                                "timestamp": "1772452800",
                                "type": "text",
                                "text": {"body": "first"},
                            },
                            {
                                "from": "16315551234",
                                "id": "wamid.A2",
                                "timestamp": "1772452801",
                                "type": "text",
                                "text": {"body": "second"},
                            },
                        ],
                    },
                }
            ],
        }
    ],
}


def channels() -> ChannelsConfig:
    return ChannelsConfig(
        adapters={
            "whatsapp": AdapterConfig(
                tenants={"acme": TenantConfig(secrets={"app_secret": "wa-secret", "verify_token": "vt"}, inbox="wa")}
            )
        }
    )


def signed(body: bytes) -> dict[str, str]:
    mac = hmac.new(b"wa-secret", body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + mac}


async def test_signed_webhook_lands_on_inbound_once(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = IngestSocialSettings(
        topic_prefix=topic_prefix,
        http_port=0,
        kafka=KafkaSettings(bootstrap=kafka_bootstrap, partitions=1),
        ingest_social_discover_plugins=False,
    )
    app = build_app(settings, channels=channels())
    body = orjson.dumps(WHATSAPP)
    async with running_app(app) as base, aiohttp.ClientSession() as http:
        await app[KAFKA].connected.wait()
        url = f"{base}/v1/whatsapp/acme"
        async with http.post(url, data=body, headers=signed(body)) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"accepted": 2, "duplicates": 0}
        async with http.post(url, data=body, headers=signed(body)) as resp:  # the provider's retry
            assert resp.status == 200
            assert await resp.json() == {"accepted": 0, "duplicates": 2}
        async with http.post(url, data=body, headers={**signed(body), "X-Hub-Signature-256": "sha256=00"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "bad_signature"
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
    records = await consume(kafka_bootstrap, Topics(topic_prefix).inbound, count=2, timeout=20)
    codec = RecordCodec(InboundMessage)
    decoded = [codec.decode_as(r.value, InboundMessage) for r in records]
    assert [r.key for r in records] == [b"acme", b"acme"]
    assert [m.provider_message_id for m in decoded] == ["wamid.A1", "wamid.A2"]
    assert [m.text for m in decoded] == ["first", "second"]
    assert {m.tenant_id for m in decoded} == {"acme"}
    assert {m.channel for m in decoded} == {Channel.WHATSAPP}
    assert decoded[0].inbox == "wa"
    assert 'switchboard_webhook_messages_total{adapter="whatsapp"} 2.0' in metrics


async def test_unreachable_broker_is_503_with_json(topic_prefix: str) -> None:
    settings = IngestSocialSettings(
        topic_prefix=topic_prefix,
        http_port=0,
        kafka=KafkaSettings(bootstrap="127.0.0.1:1", create_topics=False),
        ingest_social_discover_plugins=False,
    )
    app = build_app(settings, channels=channels())
    body = orjson.dumps(WHATSAPP)
    async with running_app(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/whatsapp/acme", data=body, headers=signed(body)) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"] == "broker_unavailable"
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 503


@pytest.mark.slow
async def test_broker_stopping_mid_run_gives_503(embedded_broker: EmbeddedBroker, topic_prefix: str) -> None:
    kafka = KafkaSettings(bootstrap=embedded_broker.bootstrap, partitions=1, request_timeout_ms=2000)
    settings = IngestSocialSettings(
        topic_prefix=topic_prefix, http_port=0, kafka=kafka, ingest_social_discover_plugins=False
    )
    async with RecordProducer(kafka, send_timeout=2.0) as producer:
        publisher = KafkaPublisher(producer, Topics(topic_prefix).inbound, timeout=2.0)
        app = build_app(settings, channels=channels(), publisher=publisher)
        ok = orjson.dumps(WHATSAPP)
        async with running_app(app) as base, aiohttp.ClientSession() as http:
            async with http.post(f"{base}/v1/whatsapp/acme", data=ok, headers=signed(ok)) as resp:
                assert resp.status == 200, await resp.text()
            embedded_broker.stop()
            again = ok.replace(b"wamid.A", b"wamid.B")
            async with http.post(f"{base}/v1/whatsapp/acme", data=again, headers=signed(again)) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "broker_unavailable"


def one_message(message_id: str) -> bytes:
    payload = orjson.loads(orjson.dumps(WHATSAPP))
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"] = [{**value["messages"][0], "id": message_id}]
    return orjson.dumps(payload)


async def test_concurrent_webhooks_are_each_on_the_broker_when_answered(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, partitions=1)
    settings = IngestSocialSettings(
        topic_prefix=topic_prefix, http_port=0, kafka=kafka, ingest_social_discover_plugins=False
    )
    async with RecordProducer(kafka) as producer:
        app = build_app(settings, channels=channels(), publisher=KafkaPublisher(producer, Topics(topic_prefix).inbound))
        ids = [f"wamid.C{i}" for i in range(24)]
        answered: list[str] = []
        async with running_app(app) as base, aiohttp.ClientSession() as http:

            async def post(message_id: str) -> None:
                body = one_message(message_id)
                async with http.post(f"{base}/v1/whatsapp/acme", data=body, headers=signed(body)) as resp:
                    assert resp.status == 200, await resp.text()
                    assert await resp.json() == {"accepted": 1, "duplicates": 0}
                    answered.append(message_id)

            await asyncio.gather(*(post(i) for i in ids))
        # every request answered 2xx is already on the broker: read exactly as many records as answers
        records = await consume(kafka_bootstrap, Topics(topic_prefix).inbound, count=len(answered))
    codec = RecordCodec(InboundMessage)
    assert sorted(codec.decode_as(r.value, InboundMessage).provider_message_id for r in records) == sorted(ids)
    assert sorted(answered) == sorted(ids)


@pytest.mark.slow
async def test_concurrent_webhooks_all_get_503_when_the_broker_is_gone(
    embedded_broker: EmbeddedBroker, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=embedded_broker.bootstrap, partitions=1, request_timeout_ms=2000)
    settings = IngestSocialSettings(
        topic_prefix=topic_prefix, http_port=0, kafka=kafka, ingest_social_discover_plugins=False
    )
    async with RecordProducer(kafka, send_timeout=2.0) as producer:
        publisher = KafkaPublisher(producer, Topics(topic_prefix).inbound, timeout=2.0)
        app = build_app(settings, channels=channels(), publisher=publisher)
        async with running_app(app) as base, aiohttp.ClientSession() as http:
            warm = one_message("wamid.W0")
            async with http.post(f"{base}/v1/whatsapp/acme", data=warm, headers=signed(warm)) as resp:
                assert resp.status == 200, await resp.text()
            embedded_broker.stop()

            async def post(message_id: str) -> tuple[int, str]:
                body = one_message(message_id)
                async with http.post(f"{base}/v1/whatsapp/acme", data=body, headers=signed(body)) as resp:
                    return resp.status, (await resp.json())["error"]

            results = await asyncio.gather(*(post(f"wamid.D{i}") for i in range(8)))
    assert results == [(503, "broker_unavailable")] * 8
