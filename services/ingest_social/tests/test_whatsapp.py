"""WhatsApp Cloud API: the contract kit and every message type of the fixture."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

from switchboard.common.events import Channel, InboundMessage
from switchboard.ingest_social.adapters.whatsapp import WhatsAppAdapter
from switchboard.ingest_social.sdk import ChannelAdapter, Tenant, TenantConfig, WebhookRequest
from switchboard.ingest_social.sdk.contract import AdapterContract, SignedRequest

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class TestWhatsAppContract(AdapterContract):
    def make_adapter(self) -> ChannelAdapter:
        return WhatsAppAdapter()

    def tenant_config(self) -> TenantConfig:
        # two app secrets during a rotation: the kit signs with the first
        return TenantConfig(secrets={"app_secret": ["acme-new", "acme-old"], "verify_token": "v"})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"app_secret": "globex-secret", "verify_token": "v2"})

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        mac = hmac.new(config.secret("app_secret").encode(), request.body, hashlib.sha256).hexdigest()
        return request.with_headers({"X-Hub-Signature-256": "sha256=" + mac})

    def message_body(self) -> bytes:
        return (FIXTURES / "whatsapp_messages.json").read_bytes()

    def non_message_body(self) -> bytes:
        return (FIXTURES / "whatsapp_statuses.json").read_bytes()

    def malformed_body(self) -> bytes:
        return b"entry=1"

    def check_message(self, message: InboundMessage) -> None:
        assert message.contact.display_name == "Kerry Fisher"
        assert message.recipient == "15550783881"


def _parse(name: str) -> list[InboundMessage]:
    request = WebhookRequest("whatsapp", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    return WhatsAppAdapter().parse((FIXTURES / name).read_bytes(), request, Tenant("acme", TenantConfig()))


def test_every_message_type_is_normalized() -> None:
    messages = {m.provider_message_id: m for m in _parse("whatsapp_messages.json")}
    # the reaction and the delivery status are not customer messages
    assert "wamid.react1" not in messages
    assert "wamid.sent1" not in messages
    assert len(messages) == 9

    text = messages["wamid.HBgLMTYzMTU1NTEyMzQVAgASGBQzQTdBNDI0MjEyQkE4QjE0M0Q1MAA="]
    assert text.channel is Channel.WHATSAPP
    assert text.text == "Where is my parcel?"
    assert text.contact.handle("whatsapp") == "16315551234"
    assert text.sent_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    image = messages["wamid.image1"]
    assert image.text == "the damaged box"
    (att,) = image.attachments
    assert att.url == "whatsapp-media:1003383421387256"
    assert att.content_type == "image/jpeg"
    # the base64 hash of the fixture is SHA-256 of the empty string
    assert att.sha256 == hashlib.sha256(b"").hexdigest()

    audio = messages["wamid.audio1"]
    assert audio.attachments[0].sha256 is None  # "abc" is not a SHA-256
    assert audio.provider_metadata["voice"] is True

    doc = messages["wamid.doc1"]
    assert doc.attachments[0].filename == "invoice.pdf"

    loc = messages["wamid.loc1"]
    assert loc.text == "Depot 1 Main St"
    assert loc.provider_metadata["latitude"] == 38.9

    button = messages["wamid.btn1"]
    assert button.text == "Ask for a refund"
    assert button.references == ("wamid.outbound_menu",)
    assert button.provider_metadata["reply_id"] == "refund"

    assert messages["wamid.list1"].text == "Billing"
    assert messages["wamid.contacts1"].text == "Shared contact: Sam Doe"

    future = messages["wamid.future1"]
    assert future.text == ""
    assert future.parser_defects == ("unsupported WhatsApp message type 'hologram'",)


def test_statuses_and_other_fields_yield_nothing() -> None:
    assert _parse("whatsapp_statuses.json") == []
