"""Twilio SMS/MMS and voice transcriptions: signature vectors, the contract kit, assembly of real-time transcripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest

from switchboard.common.events import Channel, InboundMessage
from switchboard.ingest_social.adapters.twilio import (
    TranscriptAssembler,
    TwilioSmsAdapter,
    TwilioVoiceAdapter,
)
from switchboard.ingest_social.sdk import (
    BadSignature,
    ChannelAdapter,
    MalformedPayload,
    Tenant,
    TenantConfig,
    WebhookRequest,
    twilio_signature,
)
from switchboard.ingest_social.sdk.contract import AdapterContract, SignedRequest

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def parse_qsl_pairs(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(errors="replace"), keep_blank_values=True)


FORM = "application/x-www-form-urlencoded"


def test_signature_matches_twilios_published_example() -> None:
    # The example of Twilio's webhook security documentation and of its helper libraries' tests.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


SMS = {
    "ToCountry": "US",
    "SmsMessageSid": "SM5f3d1c0a9b8e7d6c5b4a39281706f5e4",
    "NumMedia": "1",
    "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC00/Messages/MM00/Media/ME00",
    "MediaContentType0": "image/jpeg",
    "SmsSid": "SM5f3d1c0a9b8e7d6c5b4a39281706f5e4",
    "SmsStatus": "received",
    "Body": "Hello, is anyone there?",
    "To": "+15005550006",
    "NumSegments": "1",
    "MessageSid": "SM5f3d1c0a9b8e7d6c5b4a39281706f5e4",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+14155552671",
    "ApiVersion": "2010-04-01",
    "SomeFutureField": "ignored",
}


class TwilioContract(AdapterContract):
    def tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"auth_token": ["acme-primary-token", "acme-secondary-token"]})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"auth_token": "globex-token"})

    def content_type(self) -> str:
        return FORM

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        params = parse_qsl_pairs(request.body)
        sig = twilio_signature(config.secret("auth_token"), request.public_url, params)
        return request.with_headers({"X-Twilio-Signature": sig})

    def malformed_body(self) -> bytes:
        return urlencode({"Body": "no sid", "AccountSid": "AC1"}).encode()


class TestTwilioSmsContract(TwilioContract):
    def make_adapter(self) -> ChannelAdapter:
        return TwilioSmsAdapter()

    def message_body(self) -> bytes:
        return urlencode(SMS).encode()

    def non_message_body(self) -> bytes:
        return urlencode({"MessageSid": "SM1", "MessageStatus": "delivered", "From": "+15005550006"}).encode()

    def check_message(self, message: InboundMessage) -> None:
        assert message.contact.handle("phone") == "+14155552671"


class TestTwilioVoiceContract(TwilioContract):
    def make_adapter(self) -> ChannelAdapter:
        return TwilioVoiceAdapter()

    def message_body(self) -> bytes:
        return urlencode(
            {
                "TranscriptionSid": "TR0123456789abcdef0123456789abcdef",
                "TranscriptionText": "Hi, I am calling about my broken heater.",
                "TranscriptionStatus": "completed",
                "TranscriptionUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Transcriptions/TR0",
                "RecordingSid": "RE0123456789abcdef0123456789abcdef",
                "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE0",
                "CallSid": "CA0123456789abcdef0123456789abcdef",
                "AccountSid": "AC0123456789abcdef0123456789abcdef",
                "From": "+14155552671",
                "To": "+15005550006",
                "CallStatus": "completed",
                "ApiVersion": "2010-04-01",
            }
        ).encode()

    def non_message_body(self) -> bytes:
        return urlencode({"CallSid": "CA1", "CallStatus": "ringing", "From": "+14155552671"}).encode()

    def check_message(self, message: InboundMessage) -> None:
        assert message.channel is Channel.VOICE
        assert message.thread_ref == "CA0123456789abcdef0123456789abcdef"


def _request(url: str = "https://hooks.example.test/v1/twilio-sms/acme") -> WebhookRequest:
    return WebhookRequest("twilio-sms", "acme", "POST", url, {}, {}, FORM, NOW)


def test_sms_with_media_and_whatsapp_sender() -> None:
    tenant = Tenant("acme", TenantConfig())
    (msg,) = TwilioSmsAdapter().parse(urlencode(SMS).encode(), _request(), tenant)
    assert msg.channel is Channel.SMS
    assert msg.text == "Hello, is anyone there?"
    assert msg.recipient == "+15005550006"
    assert msg.attachments[0].url == SMS["MediaUrl0"]
    assert msg.attachments[0].content_type == "image/jpeg"
    assert "SomeFutureField" not in msg.provider_metadata
    wa = dict(SMS, From="whatsapp:+14155552671", NumMedia="0", ProfileName="Kim")
    (msg,) = TwilioSmsAdapter().parse(urlencode(wa).encode(), _request(), tenant)
    assert msg.channel is Channel.WHATSAPP
    assert msg.contact.handle("whatsapp") == "+14155552671"
    assert msg.contact.display_name == "Kim"


def test_signature_uses_the_public_url_not_the_internal_one() -> None:
    body = urlencode(SMS).encode()
    config = TenantConfig(secrets={"auth_token": "tok"})
    public = "https://hooks.example.test/v1/twilio-sms/acme"
    sig = twilio_signature("tok", public, parse_qsl_pairs(body))
    adapter = TwilioSmsAdapter()
    adapter.verify(
        WebhookRequest("twilio-sms", "acme", "POST", public, {"X-Twilio-Signature": sig}, {}, FORM, NOW), body, config
    )
    internal = "http://10.0.3.7:8082/v1/twilio-sms/acme"
    with pytest.raises(BadSignature):
        adapter.verify(
            WebhookRequest("twilio-sms", "acme", "POST", internal, {"X-Twilio-Signature": sig}, {}, FORM, NOW),
            body,
            config,
        )


def _rt(event: str, **extra: str) -> bytes:
    base = {"AccountSid": "AC0", "CallSid": "CA77", "TranscriptionSid": "GT77", "TranscriptionEvent": event}
    return urlencode({**base, **extra}).encode()


def _content(seq: int, text: str, *, track: str = "inbound_track", final: str = "true") -> bytes:
    data = orjson.dumps({"transcript": text, "confidence": 0.93}).decode()
    return _rt(
        "transcription-content",
        SequenceId=str(seq),
        Track=track,
        Final=final,
        TranscriptionData=data,
        LanguageCode="en-US",
    )


def test_realtime_transcription_is_one_message_when_stopped() -> None:
    adapter = TwilioVoiceAdapter()
    tenant = Tenant("acme", TenantConfig())
    req = _request()
    assert adapter.parse(_rt("transcription-started"), req, tenant) == []
    assert adapter.parse(_content(2, "Hello, my heater is broken.", track="inbound_track"), req, tenant) == []
    assert adapter.parse(_content(3, "Sorry to hear that.", track="outbound_track"), req, tenant) == []
    assert adapter.parse(_content(4, "ignored interim", final="false"), req, tenant) == []
    assert adapter.parse(_content(2, "Hello, my heater is broken."), req, tenant) == []  # a retried event
    assert adapter.parse(_content(5, "Since yesterday."), req, tenant) == []
    (msg,) = adapter.parse(_rt("transcription-stopped"), req, tenant)
    assert msg.provider_message_id == "GT77"
    assert msg.channel is Channel.VOICE
    assert msg.thread_ref == "CA77"
    assert msg.contact.handle("twilio_call") == "CA77"
    assert msg.text == "Caller: Hello, my heater is broken.\nAgent: Sorry to hear that.\nCaller: Since yesterday."
    # a retried stop rebuilds the same message (the host's dedupe drops it once published)
    (again,) = adapter.parse(_rt("transcription-stopped"), req, tenant)
    assert again.text == msg.text


def test_realtime_content_without_data_is_malformed() -> None:
    with pytest.raises(MalformedPayload):
        TwilioVoiceAdapter().parse(
            _rt("transcription-content", Final="true"), _request(), Tenant("acme", TenantConfig())
        )


def test_stop_without_segments_publishes_nothing() -> None:
    assert TwilioVoiceAdapter().parse(_rt("transcription-stopped"), _request(), Tenant("acme", TenantConfig())) == []


def test_assembler_is_bounded_and_expires() -> None:
    assembler = TranscriptAssembler(max_transcripts=2, ttl=timedelta(hours=1))
    assembler.add(("t", "a"), 1, "inbound_track", "one", None, NOW)
    assembler.add(("t", "b"), 1, "inbound_track", "two", None, NOW)
    assembler.add(("t", "c"), 1, "inbound_track", "three", None, NOW)
    assert len(assembler) == 2
    assert assembler.segments(("t", "a")) == []
    assembler.add(("t", "d"), 1, "inbound_track", "four", None, NOW + timedelta(hours=2))
    assert assembler.segments(("t", "b")) == []
    assert assembler.segments(("t", "c")) == []
    assert assembler.segments(("t", "d")) == [("inbound_track", "four")]
