"""Telegram: the contract kit (static secret token) and update normalization."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from switchboard.common.events import Channel, InboundMessage
from switchboard.ingest_social.adapters.telegram import TelegramAdapter
from switchboard.ingest_social.sdk import ChannelAdapter, Tenant, TenantConfig, WebhookRequest
from switchboard.ingest_social.sdk.contract import AdapterContract, SignedRequest

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class TestTelegramContract(AdapterContract):
    signs_body: ClassVar[bool] = False  # Telegram authenticates with a static secret token

    def make_adapter(self) -> ChannelAdapter:
        return TelegramAdapter()

    def tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"secret_token": "acme-tg-token_1"})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"secret_token": "globex-tg-token"})

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        return request.with_headers({"X-Telegram-Bot-Api-Secret-Token": config.secret("secret_token")})

    def message_body(self) -> bytes:
        return (FIXTURES / "telegram_message.json").read_bytes()

    def non_message_body(self) -> bytes:
        return (FIXTURES / "telegram_callback.json").read_bytes()

    def malformed_body(self) -> bytes:
        return b'{"update_id": 1, "message": '

    def check_message(self, message: InboundMessage) -> None:
        assert message.provider_message_id == "981234567"


def _parse(body: bytes) -> list[InboundMessage]:
    request = WebhookRequest("telegram", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    return TelegramAdapter().parse(body, request, Tenant("acme", TenantConfig()))


def test_message_update_is_normalized() -> None:
    (msg,) = _parse((FIXTURES / "telegram_message.json").read_bytes())
    assert msg.channel is Channel.TELEGRAM
    assert msg.provider == "telegram"
    assert msg.provider_message_id == "981234567"  # the update_id: redeliveries carry the same one
    assert msg.text == "receipt attached"
    assert msg.contact.display_name == "Ada Byron"
    assert msg.contact.handle("telegram") == "123456789"
    assert msg.contact.handle("telegram_username") == "ada_b"
    assert msg.thread_ref == "123456789"
    assert msg.references == ("123456789:4200",)
    assert msg.language == "en"
    assert msg.sent_at == NOW
    (photo,) = msg.attachments
    assert photo.url == "telegram-file:AgACAgQAAxkBAAIBlarge"
    assert photo.size == 59812


def test_bots_edits_and_other_updates_are_skipped() -> None:
    bot = (
        b'{"update_id": 5, "message": {"message_id": 1, "from": {"id": 9, "is_bot": true},'
        b' "chat": {"id": 9}, "text": "x"}}'
    )
    edit = b'{"update_id": 6, "edited_message": {"message_id": 1, "from": {"id": 9}, "chat": {"id": 9}, "text": "y"}}'
    assert _parse(bot) == []
    assert _parse(edit) == []
    assert _parse((FIXTURES / "telegram_callback.json").read_bytes()) == []
