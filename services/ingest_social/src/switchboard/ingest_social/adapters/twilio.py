"""Twilio Messaging (SMS, MMS, WhatsApp through Twilio) and Twilio Voice transcriptions.

Both verify ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed by the account's auth token, of
the full public URL followed by the sorted POST parameters. Behind a proxy or ingress the
URL the host sees is not the one Twilio signed, so the host's configured public base URL
(``SWITCHBOARD_INGEST_SOCIAL_PUBLIC_BASE_URL``) replaces scheme, host and port. Several auth
tokens may be configured (primary and secondary during a rotation).

``twilio-voice`` accepts the recording transcription callback (``TranscriptionStatus=completed``:
one message) and real-time transcription events (``TranscriptionEvent``): final
``transcription-content`` segments are kept in memory per transcription, and
``transcription-stopped`` publishes the whole call as one message. Because the segments
live in this process, one call's events must reach one replica (Twilio sends them from
one call to one URL; keep the service behind session-less routing with a single replica
per tenant for real-time transcription, or use recording transcriptions).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from pydantic import JsonValue

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.common.logging import get_logger
from switchboard.ingest_social.sdk import (
    BadSignature,
    ChannelAdapter,
    MalformedPayload,
    Tenant,
    TenantConfig,
    WebhookRequest,
    constant_time_equals,
    twilio_signature,
)

__all__ = ["TranscriptAssembler", "TwilioSmsAdapter", "TwilioVoiceAdapter", "parse_form"]

log = get_logger(__name__)

_FORM = frozenset({"application/x-www-form-urlencoded"})
_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_OUTBOUND_STATUSES = frozenset(
    {"accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"}
)


def parse_form(raw_body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayload("body is not a UTF-8 form") from None


class _TwilioBase(ChannelAdapter):
    provider: ClassVar[str] = "twilio"
    required_secrets: ClassVar[frozenset[str]] = frozenset({"auth_token"})
    content_types: ClassVar[frozenset[str]] = _FORM

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        presented = request.headers.get("X-Twilio-Signature")
        if not presented:
            raise BadSignature("missing X-Twilio-Signature")
        params = parse_form(raw_body)
        for token in tenant.secret_values("auth_token"):
            if constant_time_equals(presented, twilio_signature(token, request.public_url, params)):
                return
        raise BadSignature("X-Twilio-Signature does not match the URL and parameters")

    def acknowledge(self, request: WebhookRequest, published: int, duplicates: int) -> web.StreamResponse:
        return web.Response(body=_EMPTY_TWIML, content_type="text/xml")


def _phone_handle(value: str) -> tuple[ContactHandle, Channel | None]:
    """``whatsapp:+1555...`` is a WhatsApp sender through Twilio; anything else a phone number."""
    if value.startswith("whatsapp:"):
        return ContactHandle(kind="whatsapp", value=value.removeprefix("whatsapp:"), verified=True), Channel.WHATSAPP
    return ContactHandle(kind="phone", value=value, verified=True), None


class TwilioSmsAdapter(_TwilioBase):
    """Incoming message webhooks (``MessageSid``, ``From``, ``To``, ``Body``, ``NumMedia``, ``MediaUrlN``)."""

    name: ClassVar[str] = "twilio-sms"
    channel: ClassVar[Channel] = Channel.SMS

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        form = dict(parse_form(raw_body))
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if status in _OUTBOUND_STATUSES:
            return []  # a status callback of a message we sent
        sid = form.get("MessageSid") or form.get("SmsMessageSid")
        sender = form.get("From")
        if not sid or not sender:
            raise MalformedPayload("an incoming message needs MessageSid and From")
        handle, channel = _phone_handle(sender)
        attachments = []
        try:
            media_count = min(int(form.get("NumMedia") or 0), 10)
        except ValueError:
            media_count = 0
        for i in range(media_count):
            url = form.get(f"MediaUrl{i}")
            if url:
                ctype = form.get(f"MediaContentType{i}") or "application/octet-stream"
                attachments.append(Attachment(content_type=ctype, size=0, url=url))
        return [
            self.message(
                request,
                tenant,
                provider_message_id=sid,
                handles=[handle],
                display_name=form.get("ProfileName") or None,
                channel=channel,
                thread_ref=handle.value,
                recipient=form.get("To") or None,
                text=form.get("Body", ""),
                attachments=tuple(attachments),
                provider_metadata={
                    k: v for k, v in form.items() if k in ("AccountSid", "MessagingServiceSid", "NumSegments") and v
                },
            )
        ]


@dataclass
class _Transcript:
    updated: datetime
    segments: dict[int, tuple[str, str]] = field(default_factory=dict)
    call_sid: str | None = None


class TranscriptAssembler:
    """Final real-time transcription segments per transcription, bounded in count and age.

    Pure: the caller passes the time. A repeated segment (a retried event) replaces itself.
    """

    def __init__(self, max_transcripts: int = 10_000, ttl: timedelta = timedelta(hours=6)) -> None:
        self._max = max_transcripts
        self._ttl = ttl
        self._items: OrderedDict[tuple[str, str], _Transcript] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: tuple[str, str], seq: int, track: str, text: str, call_sid: str | None, now: datetime) -> None:
        self._expire(now)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = _Transcript(updated=now, call_sid=call_sid)
        item.updated = now
        item.segments[seq] = (track, text)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            dropped, _ = self._items.popitem(last=False)
            log.warning("transcript_evicted", transcription=dropped[1])

    def segments(self, key: tuple[str, str]) -> Sequence[tuple[str, str]]:
        item = self._items.get(key)
        return [item.segments[s] for s in sorted(item.segments)] if item else []

    def _expire(self, now: datetime) -> None:
        while self._items:
            key, oldest = next(iter(self._items.items()))
            if now - oldest.updated <= self._ttl:
                break
            del self._items[key]


def render_transcript(segments: Sequence[tuple[str, str]]) -> str:
    tracks = {track for track, _ in segments}
    if len(tracks) <= 1:
        return "\n".join(text for _, text in segments)
    label = {"inbound_track": "Caller", "outbound_track": "Agent"}
    return "\n".join(f"{label.get(track, track)}: {text}" for track, text in segments)


class TwilioVoiceAdapter(_TwilioBase):
    """Call transcripts: recording transcription callbacks and real-time transcription events."""

    name: ClassVar[str] = "twilio-voice"
    channel: ClassVar[Channel] = Channel.VOICE

    def __init__(self, options: Mapping[str, JsonValue] | None = None) -> None:
        super().__init__(options)
        self.assembler = TranscriptAssembler()

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        form = dict(parse_form(raw_body))
        call_sid = form.get("CallSid")
        if not call_sid:
            raise MalformedPayload("a voice callback needs CallSid")
        event = form.get("TranscriptionEvent")
        if event is not None:
            return self._realtime(event, form, call_sid, request, tenant)
        status = form.get("TranscriptionStatus")
        sid = form.get("TranscriptionSid")
        if status is None or not sid:
            return []  # a call status callback or another voice event
        if status != "completed":
            log.info("transcription_not_completed", tenant=tenant.id, status=status)
            return []
        return [self._message(form, sid, call_sid, form.get("TranscriptionText", ""), request, tenant)]

    def _realtime(
        self, event: str, form: dict[str, str], call_sid: str, request: WebhookRequest, tenant: Tenant
    ) -> list[InboundMessage]:
        sid = form.get("TranscriptionSid") or call_sid
        key = (tenant.id, sid)
        if event == "transcription-content":
            if form.get("Final", "").lower() != "true":
                return []  # an interim hypothesis; the final segment follows
            try:
                seq = int(form.get("SequenceId", ""))
                data = orjson.loads(form.get("TranscriptionData", ""))
            except (ValueError, orjson.JSONDecodeError):
                raise MalformedPayload("transcription-content needs SequenceId and JSON TranscriptionData") from None
            transcript = data.get("transcript") if isinstance(data, dict) else None
            if isinstance(transcript, str) and transcript.strip():
                self.assembler.add(key, seq, form.get("Track", ""), transcript.strip(), call_sid, request.received_at)
            return []
        if event == "transcription-stopped":
            segments = self.assembler.segments(key)
            if not segments:
                log.warning("transcript_empty_at_stop", tenant=tenant.id, transcription=sid)
                return []
            return [self._message(form, sid, call_sid, render_transcript(segments), request, tenant)]
        return []  # transcription-started, transcription-error, future events

    def _message(
        self, form: dict[str, str], sid: str, call_sid: str, text: str, request: WebhookRequest, tenant: Tenant
    ) -> InboundMessage:
        sender = form.get("From") or form.get("Caller")
        if sender:
            handle, _ = _phone_handle(sender)
        else:  # real-time transcription events do not name the caller
            handle = ContactHandle(kind="twilio_call", value=call_sid)
        recording = form.get("RecordingUrl")
        return self.message(
            request,
            tenant,
            provider_message_id=sid,
            handles=[handle],
            thread_ref=call_sid,
            recipient=form.get("To") or form.get("Called") or None,
            text=text,
            attachments=(Attachment(content_type="audio/wav", size=0, url=recording),) if recording else (),
            language=form.get("LanguageCode") or None,
            provider_metadata={"call_sid": call_sid, "transcription_sid": sid},
        )
