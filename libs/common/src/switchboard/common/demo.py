"""``switchboard-dev demo``: realistic mixed traffic through the real ingest endpoints of ``make run``.

Emails over SMTP to the dev recipients, and webhooks signed exactly as each provider signs
them (Meta's ``X-Hub-Signature-256``, Telegram's secret token, Twilio's URL signature, the
web chat site key, the custom channel's Standard Webhooks signature), with the dev tenants'
secrets from ``examples/dev/`` (DEV ONLY). The signatures come from ingest_social's own SDK
helpers, so the demo and the service agree by construction.

The stream opens with a tour that touches every case (a billing email and its reply, a
WhatsApp conversation that continues, Spanish by Telegram and by email, VIP customers by web
chat and through the signed custom channel, an SMS about a charge, a call transcript, ...) and
then goes on at random, a share of it replies joining threads already open. VIP customers carry
the contact attribute the example rules' ``vip`` queue matches on (:data:`VIP_ATTRIBUTES`), so
the channels whose payload has customer attributes (web chat, custom) carry every VIP message.
Each line printed names the fake customer, never a body, an address or a number.

:class:`DemoTraffic` builds the requests (pure: seeded, with an injected clock);
:func:`send` puts one on the wire and answers its status.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aiosmtplib

from switchboard.common.demo_profile import DevPaths, ProfileError, load_email_profile
from switchboard.ingest_social.sdk import (
    ChannelsConfig,
    ConfigError,
    TenantConfig,
    hmac_sha256,
    load_channels_config,
    sign_standard_webhook,
    twilio_signature,
)

__all__ = [
    "VIP_ATTRIBUTES",
    "DemoTraffic",
    "EmailRoutes",
    "HttpSend",
    "SendResult",
    "SmtpSend",
    "demo_addresses",
    "demo_main",
    "load_demo_inputs",
    "run_stream",
    "send",
]

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class HttpSend:
    """One signed webhook: ``POST <ingest_social><path>``."""

    label: str
    tenant: str
    channel: str
    kind: str
    customer: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class SmtpSend:
    """One email, delivered over SMTP to the email ingest."""

    label: str
    tenant: str
    channel: str
    kind: str
    customer: str
    sender: str
    recipients: tuple[str, ...]
    message: bytes


DemoSend = HttpSend | SmtpSend
Builder = Callable[..., DemoSend | None]
"""``new_<channel>(tenant, topic, *, attributes=None)``: a new customer's first message (``None``: not configured)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    item: DemoSend
    status: int | None
    """HTTP status or SMTP reply code; ``None`` when nothing answered."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        if self.status is None:
            return False
        if isinstance(self.item, SmtpSend):
            return self.status == 250
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class EmailRoutes:
    """Per tenant, the addresses the demo writes to: a general one and, where configured, billing and Spanish."""

    general: Mapping[str, str]
    billing: Mapping[str, str] = field(default_factory=dict)
    spanish: Mapping[str, str] = field(default_factory=dict)


def demo_addresses(recipients: Mapping[str, Any]) -> EmailRoutes:
    """The demo's recipients from the ingest_email recipient map (``support@`` for a whole ``@domain``)."""
    general: dict[str, str] = {}
    billing: dict[str, str] = {}
    spanish: dict[str, str] = {}
    for key, value in recipients.items():
        tenant = value if isinstance(value, str) else value.get("tenant")
        if not isinstance(tenant, str):
            continue
        address = key.lower() if "@" in key.lstrip("@") else f"support@{key.lstrip('@').lower()}"
        local = address.partition("@")[0]
        if local == "billing":
            billing.setdefault(tenant, address)
        elif local in ("soporte", "spanish", "es"):
            spanish.setdefault(tenant, address)
        else:
            general.setdefault(tenant, address)
    for mapping in (billing, spanish):
        for tenant, address in mapping.items():
            general.setdefault(tenant, address)
    return EmailRoutes(general, billing, spanish)


# --------------------------------------------------------------------------- the cast and the lines


@dataclass(slots=True)
class Customer:
    """A fake customer with one handle per channel (all in reserved or fictional ranges)."""

    n: int
    name: str
    slug: str

    @property
    def email(self) -> str:
        return f"{self.slug}@customers.example"

    @property
    def phone(self) -> str:
        return f"+1555010{self.n % 10000:04d}"  # 555-01xx: reserved for fiction

    @property
    def wa_id(self) -> str:
        return self.phone.removeprefix("+")

    @property
    def psid(self) -> str:
        return f"{7000000000000000 + self.n}"

    @property
    def telegram_id(self) -> int:
        return 900000000 + self.n

    @property
    def visitor(self) -> str:
        return f"visitor-{self.slug}"


NAMES = (
    "Dana Demo",
    "Lee Example",
    "Sam Sample",
    "Alex Placeholder",
    "Rosa Prueba",
    "Kim Testcase",
    "Jo Mockingbird",
    "Pat Fixture",
    "Lucia Ejemplo",
    "Chris Dummy",
    "Mo Stub",
    "Ana Ficticia",
)

TOPICS: dict[str, tuple[tuple[str, str], ...]] = {
    "billing": (
        ("Refund for invoice {n}", "Hello, I was charged twice for invoice {n}. Could you refund the extra charge?"),
        ("Billing question", "Our billing contact changed, please send the next invoice to the new team."),
        ("Invoice {n} payment failed", "The payment for invoice {n} failed although the card is valid."),
    ),
    "technical": (
        ("App crashes on upload", "The app crashes every time I upload a photo larger than 5 MB."),
        ("Cannot log in", "Since this morning the login page says my session expired, over and over."),
        ("Export stuck", "The CSV export has been stuck at 90% for an hour."),
    ),
    "spanish": (
        ("No puedo entrar", "Hola, no puedo entrar en mi cuenta desde ayer. ¿Me pueden ayudar?"),
        ("Pedido retrasado", "Buenas tardes, mi pedido {n} lleva una semana de retraso."),
    ),
    "vip": (
        ("Production outage", "Our production dashboard is down for the whole team. This is urgent."),
        ("Urgent: API errors", "We see 500 errors on every API call since the last release."),
    ),
}

VIP_ATTRIBUTES: tuple[Mapping[str, str], ...] = ({"tier": "gold"}, {"tier": "platinum"})
"""The contact attributes of the demo's VIP customers: what the ``vip`` queue of the example rules
(``services/router/examples/rules.yaml``, ``match: {attributes: {tier: [gold, platinum]}}``) takes."""

REPLIES = (
    "Any news on this? It is still happening.",
    "I tried again, same result. Screenshot attached in my head.",
    "Thanks for the quick answer! One more question though.",
    "Hola de nuevo, ¿alguna novedad?",
)


@dataclass(slots=True)
class Thread:
    """An open conversation the customer may write to again."""

    tenant: str
    channel: str
    customer: Customer
    topic: str
    last_ref: str
    subject: str = ""
    references: list[str] = field(default_factory=list)
    attributes: Mapping[str, str] | None = None
    """The customer's contact attributes, sent again with each reply where the channel carries them."""
    adapter: str = ""
    """The ingest_social adapter, where it is not named like the channel (``custom``)."""

    def __post_init__(self) -> None:
        if not self.adapter:
            self.adapter = {"chat": "webchat", "sms": "twilio-sms", "voice": "twilio-voice"}.get(
                self.channel, self.channel
            )


# --------------------------------------------------------------------------- the generator


class DemoTraffic:
    """An endless, seeded stream of demo sends for the tenants and channels that are configured.

    ``channels`` is the ingest_social channels file (secrets per adapter and tenant) and
    ``emails`` the addresses of the email ingest; ``social_url`` is the base URL the
    webhooks are posted to (Twilio signs the full URL).
    """

    def __init__(
        self,
        channels: ChannelsConfig,
        emails: EmailRoutes,
        *,
        social_url: str,
        seed: int | None = None,
        run_id: str | None = None,
        reply_share: float = 0.35,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._channels = {name: cfg.tenants for name, cfg in channels.enabled().items()}
        self._emails = emails
        self._social_url = social_url.rstrip("/")
        self._rng = random.Random(seed)  # noqa: S311  # demo traffic, not cryptography
        self._run = run_id or secrets.token_hex(3)
        self._run_number = int.from_bytes(self._run.encode(), "big") % 1_000_000
        self._reply_share = reply_share
        self._clock = clock
        self._count = 0
        self._customers = 0
        self._threads: list[Thread] = []

    # ------------------------------------------------------------------ the public stream

    def tenants(self) -> list[str]:
        found = set(self._emails.general)
        for tenants in self._channels.values():
            found.update(tenants)
        return sorted(found)

    def __iter__(self) -> Iterator[DemoSend]:
        yield from self.tour()
        while True:
            yield self.random_send()

    def take(self, n: int) -> list[DemoSend]:
        out: list[DemoSend] = []
        for item in self:
            if len(out) >= n:
                break
            out.append(item)
        return out

    def tour(self) -> list[DemoSend]:
        """One of each case, for each tenant, in an order that shows threads continuing."""
        out: list[DemoSend] = []
        for tenant in self.tenants():
            steps: list[DemoSend | None] = [
                self.new_email(tenant, "billing"),
                self.new_whatsapp(tenant, "technical"),
                self.new_telegram(tenant, "spanish"),
                self.new_webchat(tenant, "vip", attributes=VIP_ATTRIBUTES[0]),
                self.new_custom(tenant, "vip", attributes=VIP_ATTRIBUTES[1]),
                self.new_sms(tenant, "billing"),
                self.new_messenger(tenant, "technical"),
                self.new_email(tenant, "spanish"),
                self.new_call(tenant, "technical"),
            ]
            out.extend(s for s in steps if s is not None)
            for adapter in ("email", "whatsapp", "webchat", "custom"):
                thread = next((t for t in self._threads if t.tenant == tenant and t.adapter == adapter), None)
                if thread is not None:
                    reply = self.reply(thread)
                    if reply is not None:
                        out.append(reply)
        return out

    def random_send(self) -> DemoSend:
        if self._threads and self._rng.random() < self._reply_share:
            reply = self.reply(self._rng.choice(self._threads))
            if reply is not None:
                return reply
        for _ in range(20):
            tenant = self._rng.choice(self.tenants())
            topic = self._rng.choice(("billing", "technical", "technical", "spanish", "vip"))
            attributes: Mapping[str, str] | None = None
            if topic == "vip":  # a VIP writes where the payload carries the attribute the vip queue matches
                builders: tuple[Builder, ...] = (self.new_webchat, self.new_custom)
                attributes = self._rng.choice(VIP_ATTRIBUTES)
            else:
                builders = (
                    self.new_email,
                    self.new_email,
                    self.new_whatsapp,
                    self.new_messenger,
                    self.new_telegram,
                    self.new_sms,
                    self.new_webchat,
                    self.new_call,
                )
            item = self._rng.choice(builders)(tenant, topic, attributes=attributes)
            if item is not None:
                return item
        raise RuntimeError("no channel of the demo is configured for any tenant")

    # ------------------------------------------------------------------ helpers

    def _next(self) -> int:
        self._count += 1
        return self._count

    def _customer(self) -> Customer:
        self._customers += 1
        n = self._run_number * 100 + self._customers
        name = NAMES[(self._customers - 1) % len(NAMES)]
        return Customer(n=n, name=name, slug=f"{name.lower().replace(' ', '.')}.{self._run}.{self._customers}")

    def _line(self, topic: str) -> tuple[str, str]:
        subject, text = self._rng.choice(TOPICS[topic])
        n = 1000 + self._rng.randrange(9000)
        return subject.format(n=n), text.format(n=n)

    def _secret(self, adapter: str, tenant: str) -> TenantConfig | None:
        return self._channels.get(adapter, {}).get(tenant)

    def _label(self, n: int) -> str:
        return f"#{n:03d}"

    def _remember(self, thread: Thread) -> None:
        self._threads.append(thread)
        if len(self._threads) > 200:
            self._threads.pop(0)

    def _http(
        self,
        adapter: str,
        tenant: str,
        channel: str,
        kind: str,
        customer: Customer,
        body: bytes,
        headers: Mapping[str, str],
    ) -> HttpSend:
        return HttpSend(
            label=self._label(self._next()),
            tenant=tenant,
            channel=channel,
            kind=kind,
            customer=customer.name,
            path=f"/v1/{adapter}/{tenant}",
            headers=dict(headers),
            body=body,
        )

    # ------------------------------------------------------------------ email

    def new_email(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> SmtpSend | None:
        if tenant not in self._emails.general:
            return None
        customer = self._customer()
        subject, text = self._line(topic)
        to = self._emails.general[tenant]
        if topic == "billing":
            to = self._emails.billing.get(tenant, to)
        elif topic == "spanish":
            to = self._emails.spanish.get(tenant, to)
        message_id = f"demo-{self._run}-{self._count + 1}@customers.example"
        thread = Thread(tenant, "email", customer, topic, message_id, subject=subject, references=[message_id])
        self._remember(thread)
        return self._email(
            thread, to, subject, text, kind=f"new {topic}", language="es" if topic == "spanish" else None
        )

    def _email(self, thread: Thread, to: str, subject: str, text: str, *, kind: str, language: str | None) -> SmtpSend:
        n = self._next()
        msg = EmailMessage()
        msg["From"] = formataddr((thread.customer.name, thread.customer.email))
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(self._clock())
        msg["Message-ID"] = f"<{thread.last_ref}>"
        if len(thread.references) > 1:
            msg["In-Reply-To"] = f"<{thread.references[-2]}>"
            msg["References"] = " ".join(f"<{r}>" for r in thread.references[:-1])
        msg.set_content(text)
        if language:  # after set_content, which drops every Content-* header
            msg["Content-Language"] = language
        return SmtpSend(
            label=self._label(n),
            tenant=thread.tenant,
            channel="email",
            kind=kind,
            customer=thread.customer.name,
            sender=thread.customer.email,
            recipients=(to,),
            message=msg.as_bytes(),
        )

    # ------------------------------------------------------------------ Meta: WhatsApp and Messenger

    def new_whatsapp(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        if self._secret("whatsapp", tenant) is None:
            return None
        customer = self._customer()
        _, text = self._line(topic)
        thread = Thread(tenant, "whatsapp", customer, topic, "")
        self._remember(thread)
        return self._whatsapp(thread, text, kind=f"new {topic}")

    def _whatsapp(self, thread: Thread, text: str, *, kind: str) -> HttpSend | None:
        config = self._secret("whatsapp", thread.tenant)
        if config is None:
            return None
        wamid = f"wamid.DEMO{self._run}{self._count + 1:06d}"
        message: dict[str, Any] = {
            "from": thread.customer.wa_id,
            "id": wamid,
            "timestamp": str(int(self._clock().timestamp())),
            "type": "text",
            "text": {"body": text},
        }
        if thread.last_ref:
            message["context"] = {"from": "15550100000", "id": thread.last_ref}
        thread.last_ref = wamid
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550100000",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [
                                    {"profile": {"name": thread.customer.name}, "wa_id": thread.customer.wa_id}
                                ],
                                "messages": [message],
                            },
                        }
                    ],
                }
            ],
        }
        body = _json(payload)
        return self._http(
            "whatsapp", thread.tenant, "whatsapp", kind, thread.customer, body, _meta_headers(config, body)
        )

    def new_messenger(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        config = self._secret("messenger", tenant)
        if config is None:
            return None
        customer = self._customer()
        _, text = self._line(topic)
        mid = f"m_DEMO{self._run}{self._count + 1:06d}"
        stamp = int(self._clock().timestamp() * 1000)
        payload = {
            "object": "page",
            "entry": [
                {
                    "id": "110000000000001",
                    "time": stamp,
                    "messaging": [
                        {
                            "sender": {"id": customer.psid},
                            "recipient": {"id": "110000000000001"},
                            "timestamp": stamp,
                            "message": {"mid": mid, "text": text},
                        }
                    ],
                }
            ],
        }
        self._remember(Thread(tenant, "messenger", customer, topic, mid))
        body = _json(payload)
        return self._http("messenger", tenant, "messenger", f"new {topic}", customer, body, _meta_headers(config, body))

    # ------------------------------------------------------------------ Telegram

    def new_telegram(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        config = self._secret("telegram", tenant)
        if config is None:
            return None
        customer = self._customer()
        _, text = self._line(topic)
        n = self._count + 1
        first, _, last = customer.name.partition(" ")
        sender = {
            "id": customer.telegram_id,
            "is_bot": False,
            "first_name": first,
            "last_name": last,
            "language_code": "es" if topic == "spanish" else "en",
        }
        update = {
            "update_id": self._run_number * 10_000 + n,
            "message": {
                "message_id": n,
                "from": sender,
                "chat": {"id": customer.telegram_id, "type": "private", "first_name": first},
                "date": int(self._clock().timestamp()),
                "text": text,
            },
        }
        self._remember(Thread(tenant, "telegram", customer, topic, str(n)))
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": config.secret("secret_token")}
        return self._http("telegram", tenant, "telegram", f"new {topic}", customer, _json(update), headers)

    # ------------------------------------------------------------------ Twilio: SMS and call transcripts

    def new_sms(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        if self._secret("twilio-sms", tenant) is None:
            return None
        customer = self._customer()
        _, text = self._line(topic)
        thread = Thread(tenant, "sms", customer, topic, "")
        self._remember(thread)
        return self._sms(thread, text, kind=f"new {topic}")

    def _sms(self, thread: Thread, text: str, *, kind: str) -> HttpSend | None:
        config = self._secret("twilio-sms", thread.tenant)
        if config is None:
            return None
        sid = f"SM{self._run}{self._count + 1:026d}"
        thread.last_ref = sid
        params = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": thread.customer.phone,
            "To": "+15550100000",
            "Body": text,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        return self._twilio("twilio-sms", "sms", thread, config, params, kind)

    def new_call(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        config = self._secret("twilio-voice", tenant)
        if config is None:
            return None
        customer = self._customer()
        _, text = self._line(topic)
        call_sid = f"CA{self._run}{self._count + 1:026d}"
        params = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": call_sid,
            "From": customer.phone,
            "To": "+15550100000",
            "TranscriptionSid": f"TR{self._run}{self._count + 1:026d}",
            "TranscriptionStatus": "completed",
            "TranscriptionText": text,
            "TranscriptionType": "fast",
            "RecordingSid": f"RE{self._run}{self._count + 1:026d}",
            "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/demo",
            "CallStatus": "completed",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        thread = Thread(tenant, "voice", customer, topic, call_sid)
        self._remember(thread)
        return self._twilio("twilio-voice", "voice", thread, config, params, f"new {topic} (transcript)")

    def _twilio(
        self, adapter: str, channel: str, thread: Thread, config: TenantConfig, params: dict[str, str], kind: str
    ) -> HttpSend:
        path = f"/v1/{adapter}/{thread.tenant}"
        signature = twilio_signature(config.secret("auth_token"), self._social_url + path, params.items())
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        return self._http(adapter, thread.tenant, channel, kind, thread.customer, urlencode(params).encode(), headers)

    # ------------------------------------------------------------------ web chat

    def new_webchat(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        if self._secret("webchat", tenant) is None:
            return None
        customer = self._customer()
        _, text = self._line(topic)
        thread = Thread(tenant, "chat", customer, topic, "", attributes=attributes)
        self._remember(thread)
        return self._webchat(thread, text, kind=f"new {topic}")

    def _webchat(self, thread: Thread, text: str, *, kind: str) -> HttpSend | None:
        config = self._secret("webchat", thread.tenant)
        if config is None:
            return None
        message_id = f"c-{self._run}-{self._count + 1}"
        thread.last_ref = message_id
        payload: dict[str, Any] = {
            "type": "message",
            "message_id": message_id,
            "visitor_id": thread.customer.visitor,
            "name": thread.customer.name,
            "text": text,
            "language": "es" if thread.topic == "spanish" else "en",
            "page_url": f"https://{thread.tenant}.example/help",
        }
        if thread.attributes:
            payload["attributes"] = dict(thread.attributes)
        headers = {"Content-Type": "application/json", "X-Switchboard-Chat-Key": config.secret("site_key")}
        return self._http("webchat", thread.tenant, "chat", kind, thread.customer, _json(payload), headers)

    # ------------------------------------------------------------------ the custom channel (Standard Webhooks)

    def new_custom(self, tenant: str, topic: str, *, attributes: Mapping[str, str] | None = None) -> HttpSend | None:
        """A case from the customer portal, pushed by the CRM through the signed custom channel (as chat)."""
        if self._secret("custom", tenant) is None:
            return None
        customer = self._customer()
        subject, text = self._line(topic)
        thread = Thread(tenant, "chat", customer, topic, "", subject=subject, attributes=attributes, adapter="custom")
        self._remember(thread)
        return self._custom(thread, text, kind=f"new {topic} (portal)")

    def _custom(self, thread: Thread, text: str, *, kind: str) -> HttpSend | None:
        config = self._secret("custom", thread.tenant)
        if config is None:
            return None
        message_id = f"crm-{self._run}-{self._count + 1}"
        contact: dict[str, Any] = {
            "display_name": thread.customer.name,
            "handles": [{"kind": "crm_customer", "value": f"C-{thread.customer.n}"}],
        }
        if thread.attributes:
            contact["attributes"] = dict(thread.attributes)
        data: dict[str, Any] = {
            "id": message_id,
            "channel": "chat",
            "contact": contact,
            "text": text,
            "subject": thread.subject or None,
            "thread_id": f"case-{self._run}-{thread.customer.n}",
            "sent_at": self._clock().isoformat(),
            "language": "es" if thread.topic == "spanish" else "en",
            "metadata": {"source": "customer-portal"},
        }
        if thread.last_ref:
            data["in_reply_to"] = [thread.last_ref]
        thread.last_ref = message_id
        body = _json({"type": "message.created", "data": data})
        stamp = int(self._clock().timestamp())
        webhook_id = f"msg_{message_id}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard_webhook(config.secret("signing_secret"), webhook_id, stamp, body),
        }
        return self._http("custom", thread.tenant, "chat", kind, thread.customer, body, headers)

    # ------------------------------------------------------------------ replies

    def reply(self, thread: Thread) -> DemoSend | None:
        """The customer writes again in an open thread (same thread reference, In-Reply-To for email)."""
        text = self._rng.choice(REPLIES)
        kind = f"reply {thread.topic}"
        if thread.channel == "email":
            to = self._emails.general.get(thread.tenant)
            if to is None:
                return None
            message_id = f"demo-{self._run}-{self._count + 1}@customers.example"
            thread.references.append(message_id)
            thread.last_ref = message_id
            subject = thread.subject if thread.subject.startswith("Re: ") else f"Re: {thread.subject}"
            return self._email(
                thread, to, subject, text, kind=kind, language="es" if thread.topic == "spanish" else None
            )
        if thread.channel == "whatsapp":
            return self._whatsapp(thread, text, kind=kind)
        if thread.channel == "sms":
            return self._sms(thread, text, kind=kind)
        if thread.adapter == "custom":
            return self._custom(thread, text, kind=kind)
        if thread.channel == "chat":
            return self._webchat(thread, text, kind=kind)
        return None  # Messenger, Telegram and calls: a new message there is shown as a new line


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _meta_headers(config: TenantConfig, body: bytes) -> dict[str, str]:
    """``X-Hub-Signature-256`` as Meta computes it: hex HMAC-SHA256 of the raw body with the app secret."""
    signature = "sha256=" + hmac_sha256(config.secret("app_secret"), body).hex()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


# --------------------------------------------------------------------------- on the wire


async def send(
    item: DemoSend,
    *,
    http: aiohttp.ClientSession,
    social_url: str,
    smtp_host: str,
    smtp_port: int,
    timeout: float = 15.0,
) -> SendResult:
    """Send one item; the result carries the HTTP status or the SMTP code of the DATA reply."""
    if isinstance(item, HttpSend):
        try:
            async with http.post(
                social_url.rstrip("/") + item.path,
                data=item.body,
                headers=dict(item.headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                await resp.read()
                return SendResult(item, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(item, None, type(exc).__name__)
    try:
        async with aiosmtplib.SMTP(hostname=smtp_host, port=smtp_port, timeout=timeout, start_tls=False) as smtp:
            await smtp.mail(item.sender)
            for rcpt in item.recipients:
                await smtp.rcpt(rcpt)
            reply = await smtp.data(item.message)
            return SendResult(item, reply.code)
    except aiosmtplib.SMTPResponseException as exc:
        return SendResult(item, exc.code, exc.message.split("\n", 1)[0][:120])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return SendResult(item, None, type(exc).__name__)


def describe(result: SendResult) -> str:
    """One output line: number, tenant, channel, what, the fake customer's name, the status."""
    item = result.item
    status = str(result.status) if result.status is not None else "---"
    if result.error:
        status += f" ({result.error})"
    mark = "ok " if result.ok else "ERR"
    return f"{item.label} {mark} {item.tenant:<8} {item.channel:<10} {item.kind:<28} {item.customer:<18} -> {status}"


async def run_stream(
    traffic: DemoTraffic,
    *,
    rate: float,
    duration: float,
    social_url: str,
    smtp_host: str,
    smtp_port: int,
    out: Callable[[str], None] = print,
) -> list[SendResult]:
    """Send the whole tour, then more, at ``rate`` per second until ``duration`` seconds have passed."""
    results: list[SendResult] = []
    interval = 1.0 / rate
    tour = traffic.tour()

    def items() -> Iterator[DemoSend]:
        yield from tour
        while True:
            yield traffic.random_send()

    start = time.monotonic()
    async with aiohttp.ClientSession() as http:
        for i, item in enumerate(items()):
            if i >= len(tour) and time.monotonic() - start >= duration:
                break
            result = await send(item, http=http, social_url=social_url, smtp_host=smtp_host, smtp_port=smtp_port)
            results.append(result)
            out(describe(result))
            delay = start + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return results


# --------------------------------------------------------------------------- the command


def _say(line: str) -> None:
    print(f"demo | {line}", flush=True)


def load_demo_inputs(env: Mapping[str, str], paths: DevPaths) -> tuple[ChannelsConfig, EmailRoutes]:
    """The channels file and the email recipients ``make run`` gave the services (the user's, else the dev ones)."""
    channels_path = env.get("SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE") or paths.channels_file
    channels = load_channels_config(channels_path) if channels_path else ChannelsConfig()
    recipients: Mapping[str, Any] = {}
    if env.get("SWITCHBOARD_RECIPIENTS"):
        try:
            recipients = json.loads(env["SWITCHBOARD_RECIPIENTS"])
        except ValueError:
            raise ProfileError("SWITCHBOARD_RECIPIENTS is not JSON") from None
    elif paths.email_file is not None:
        recipients = load_email_profile(paths.email_file)["recipients"]
    return channels, demo_addresses(recipients)


async def _preflight(social_url: str, smtp_host: str, smtp_port: int) -> list[str]:
    problems: list[str] = []
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{social_url}/readyz") as resp:
            if resp.status != 200:
                problems.append(f"ingest_social at {social_url} is not ready (HTTP {resp.status})")
    except (aiohttp.ClientError, TimeoutError):
        problems.append(f"ingest_social does not answer at {social_url}")
    try:
        async with aiosmtplib.SMTP(hostname=smtp_host, port=smtp_port, timeout=5, start_tls=False):
            pass
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        problems.append(f"ingest_email's SMTP listener does not answer at {smtp_host}:{smtp_port}")
    return problems


async def demo_main(
    *,
    rate: float,
    duration: float,
    social_url: str,
    smtp_host: str,
    smtp_port: int,
    seed: int | None,
    env: Mapping[str, str],
    paths: DevPaths,
) -> int:
    """``switchboard-dev demo``: 0 when every message was accepted, 1 when some were refused, 2 when nothing runs."""
    try:
        channels, emails = load_demo_inputs(env, paths)
    except (ProfileError, ConfigError) as exc:
        _say(str(exc))
        return 2
    problems = await _preflight(social_url, smtp_host, smtp_port)
    if problems:
        for problem in problems:
            _say(problem)
        _say("start everything with `make run` (in another terminal) first")
        return 2
    traffic = DemoTraffic(channels, emails, social_url=social_url, seed=seed)
    if not traffic.tenants():
        _say("no tenant is configured in the channels file or the email recipients; nothing to send")
        return 2
    _say(f"tenants {', '.join(traffic.tenants())}; {rate:g} messages/s for {duration:g} s (the tour at least)")
    results = await run_stream(
        traffic,
        rate=rate,
        duration=duration,
        social_url=social_url,
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        out=lambda line: _say(line),
    )
    failed = [r for r in results if not r.ok]
    _say(f"sent {len(results)}: {len(results) - len(failed)} accepted, {len(failed)} refused or unanswered")
    return 1 if failed else 0
