"""The demo generator: every case in the tour, threads that continue, signatures the adapters accept."""

from __future__ import annotations

import email
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from multidict import CIMultiDict

from switchboard.common.demo import (
    VIP_ATTRIBUTES,
    DemoTraffic,
    HttpSend,
    SendResult,
    SmtpSend,
    demo_addresses,
    describe,
)
from switchboard.common.demo_profile import find_dev_paths, load_email_profile, load_yaml
from switchboard.common.demo_roster import load_roster
from switchboard.common.events import AgentUpserted, InboundMessage
from switchboard.ingest_social.adapters import BUILTIN_ADAPTERS
from switchboard.ingest_social.sdk import BadSignature, ChannelsConfig, Tenant, WebhookRequest, load_channels_config
from switchboard.router.engine import RouterEngine
from switchboard.router.rules import load_rules
from switchboard.router.testing import FakeClock

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SOCIAL = "http://127.0.0.1:8082"


def channels() -> ChannelsConfig:
    paths = find_dev_paths([REPO])
    assert paths.channels_file is not None
    return load_channels_config(paths.channels_file)


def traffic(seed: int = 1) -> DemoTraffic:
    paths = find_dev_paths([REPO])
    assert paths.email_file is not None
    emails = demo_addresses(load_email_profile(paths.email_file)["recipients"])
    return DemoTraffic(channels(), emails, social_url=SOCIAL, seed=seed, run_id="abc123", clock=lambda: NOW)


def test_the_tour_covers_every_channel_for_each_tenant() -> None:
    tour = traffic().tour()
    seen = Counter((item.tenant, item.channel) for item in tour)
    for tenant in ("acme", "globex"):
        for channel in ("email", "whatsapp", "messenger", "telegram", "sms", "voice", "chat"):
            assert seen[(tenant, channel)] >= 1, (tenant, channel)
    kinds = {item.kind for item in tour}
    assert {"new billing", "new spanish", "new vip", "new vip (portal)", "new technical (transcript)"} <= kinds
    # email, WhatsApp and web chat per tenant, and the custom (portal) case where it is configured (acme)
    assert sum(item.kind.startswith("reply") for item in tour) == 7
    custom = [i for i in tour if isinstance(i, HttpSend) and i.path.startswith("/v1/custom/")]
    assert [(i.tenant, i.kind) for i in custom] == [("acme", "new vip (portal)"), ("acme", "reply vip")]


def test_email_replies_join_the_thread() -> None:
    tour = traffic().tour()
    emails = [item for item in tour if isinstance(item, SmtpSend) and item.tenant == "acme"]
    first = email.message_from_bytes(emails[0].message)
    reply = email.message_from_bytes(next(e for e in emails if e.kind.startswith("reply")).message)
    assert reply["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in reply["References"]
    assert reply["Subject"] == "Re: " + first["Subject"]
    assert emails[0].recipients == ("billing@acme.example",)  # billing mail goes to the billing inbox
    spanish = next(e for e in emails if e.kind == "new spanish")
    assert email.message_from_bytes(spanish.message)["Content-Language"] == "es"


def test_whatsapp_reply_quotes_the_previous_message() -> None:
    tour = traffic().tour()
    sends = [i for i in tour if isinstance(i, HttpSend) and i.channel == "whatsapp" and i.tenant == "acme"]
    first, reply = (orjson.loads(s.body)["entry"][0]["changes"][0]["value"]["messages"][0] for s in sends[:2])
    assert reply["from"] == first["from"]
    assert reply["context"]["id"] == first["id"]


def test_same_seed_same_stream_and_new_run_new_ids() -> None:
    a, b = traffic(seed=5).take(40), traffic(seed=5).take(40)
    assert [(i.tenant, i.channel, i.kind) for i in a] == [(i.tenant, i.channel, i.kind) for i in b]
    other = DemoTraffic(channels(), demo_addresses({}), social_url=SOCIAL, seed=5, run_id="ffff00", clock=lambda: NOW)
    bodies = {i.body for i in a if isinstance(i, HttpSend)}
    assert not bodies & {i.body for i in other.take(40) if isinstance(i, HttpSend)}
    assert other.tenants() == ["acme", "globex"]  # no email routes: webhooks only


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_webhook_passes_its_adapters_own_verification(seed: int) -> None:
    """Signed as the provider does: the adapter's verify() and parse() accept each request."""
    config = channels()
    adapters = {cls.name: cls() for cls in BUILTIN_ADAPTERS}
    for item in traffic(seed).take(60):
        if not isinstance(item, HttpSend):
            continue
        name = item.path.split("/")[2]
        tenant_config = config.adapters[name].tenants[item.tenant]
        request = WebhookRequest(
            adapter=name,
            tenant_id=item.tenant,
            method="POST",
            public_url=SOCIAL + item.path,
            headers=CIMultiDict(item.headers),
            query={},
            content_type=item.headers["Content-Type"],
            received_at=NOW,
        )
        adapters[name].verify(request, item.body, tenant_config)
        [message] = adapters[name].parse(item.body, request, Tenant(item.tenant, tenant_config))
        assert message.channel == item.channel
        if {"X-Hub-Signature-256", "X-Twilio-Signature"} & set(item.headers):  # the body is signed
            with pytest.raises(BadSignature):
                adapters[name].verify(request, item.body.replace(b"e", b"E", 1), tenant_config)


def test_output_lines_name_only_the_fake_customer() -> None:
    for item in traffic().take(40):
        line = describe(SendResult(item, 250 if isinstance(item, SmtpSend) else 200))
        assert item.customer in line
        assert "@" not in line
        assert "+1555" not in line
        assert " ok " in line
        if isinstance(item, SmtpSend):
            body = email.message_from_bytes(item.message).get_payload()
            assert isinstance(body, str)
            assert body.strip()[:20] not in line
    refused = describe(SendResult(traffic().tour()[0], 550, "unknown recipient"))
    assert "ERR" in refused
    assert refused.endswith("-> 550 (unknown recipient)")


def _parse(item: HttpSend) -> InboundMessage:
    config = channels()
    name = item.path.split("/")[2]
    adapter = next(cls() for cls in BUILTIN_ADAPTERS if cls.name == name)
    tenant_config = config.adapters[name].tenants[item.tenant]
    request = WebhookRequest(
        adapter=name,
        tenant_id=item.tenant,
        method="POST",
        public_url=SOCIAL + item.path,
        headers=CIMultiDict(item.headers),
        query={},
        content_type=item.headers["Content-Type"],
        received_at=NOW,
    )
    adapter.verify(request, item.body, tenant_config)
    [message] = adapter.parse(item.body, request, Tenant(item.tenant, tenant_config))
    return message


def test_every_vip_message_carries_a_vip_attribute_and_no_other_does() -> None:
    items = traffic(seed=7).take(300)
    vip = [i for i in items if i.kind.endswith("vip") or i.kind.startswith("new vip")]
    # by web chat and by the custom channel
    assert {i.path.split("/")[2] for i in vip if isinstance(i, HttpSend)} == {"webchat", "custom"}
    assert sum(i.kind.startswith("new vip") for i in items) > 3  # the random part sends VIPs too, not only the tour
    for item in items:
        if not isinstance(item, HttpSend):
            assert "vip" not in item.kind  # email has no customer attributes: VIPs never write there
            continue
        attributes = _parse(item).contact.attributes
        if "vip" in item.kind:
            assert attributes in VIP_ATTRIBUTES, (item.label, item.kind)
        else:
            assert attributes == {}, (item.label, item.kind)
    seen = {_parse(i).contact.attributes["tier"] for i in vip if isinstance(i, HttpSend)}
    assert seen == {"gold", "platinum"}


def test_vip_attributes_are_what_the_example_rules_vip_queue_matches() -> None:
    paths = find_dev_paths([REPO])
    assert paths.rules_file is not None
    rules = load_yaml(paths.rules_file)
    tenants = rules["tenants"]
    vip_queues = {tenant: q for tenant, spec in tenants.items() for q in spec.get("queues", []) if q["id"] == "vip"}
    assert set(vip_queues) == {"acme"}
    wanted = vip_queues["acme"]["match"]["attributes"]
    for attributes in VIP_ATTRIBUTES:
        assert set(attributes) == set(wanted)
        for name, value in attributes.items():
            allowed = wanted[name] if isinstance(wanted[name], list) else [wanted[name]]
            assert value in allowed
    # the vip queue picks agents of the vip team: the dev roster has some, with chat capacity
    roster = load_yaml(paths.roster_file) if paths.roster_file else {"agents": []}
    vip_agents = [
        a for a in roster["agents"] if a["tenant"] == "acme" and "vip" in a.get("attributes", {}).get("teams", [])
    ]
    assert vip_agents
    assert all(a["capacity"].get("chat", 0) > 0 for a in vip_agents)


def test_demo_vips_land_in_the_vip_queue_of_the_example_rules() -> None:
    """The demo's webhooks, parsed by the real adapters, routed by the real engine with the example rules and roster."""
    paths = find_dev_paths([REPO])
    assert paths.rules_file is not None
    assert paths.roster_file is not None
    engine = RouterEngine(load_rules(paths.rules_file), FakeClock(NOW))
    for agent in load_roster(paths.roster_file).agents:
        engine.handle(AgentUpserted.model_validate({"tenant_id": agent.tenant, "agent_id": agent.id, **agent.body()}))
    routed: list[tuple[str, str, str | None, str | None]] = []  # tenant, kind, queue, agent
    for item in traffic(seed=7).take(120):
        if not isinstance(item, HttpSend) or not item.kind.startswith("new "):
            continue
        effects = engine.handle(_parse(item))
        entry = next(e for e in effects.log if e.queue_id is not None)
        routed.append((item.tenant, item.kind, entry.queue_id, entry.agent_id))
    acme_vip = [r for r in routed if r[0] == "acme" and r[1].startswith("new vip")]
    assert {r[1] for r in acme_vip} == {"new vip", "new vip (portal)"}
    assert all(queue == "vip" for _, _, queue, _ in acme_vip), acme_vip
    # the vip team (ava, carmen) is offered the first ones; later ones wait in the vip queue when they are full
    assert {agent for *_, agent in acme_vip[:2]} <= {"ava", "carmen"}
    assert {agent for *_, agent in acme_vip if agent is not None} <= {"ava", "carmen"}
    others = [r for r in routed if not (r[0] == "acme" and r[1].startswith("new vip"))]
    assert others
    assert all(queue != "vip" for _, _, queue, _ in others), others
