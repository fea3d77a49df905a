"""End-to-end kit: the four services as real OS processes, the receivers the notifier delivers to,
and the customer side (SMTP mail, signed WhatsApp Cloud API webhooks).

Every service is started with ``python -m switchboard.<service>`` and configured only through
``SWITCHBOARD_*`` variables, on free loopback ports, with topics under a prefix of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from switchboard.common.broker import free_port
from switchboard.common.events import Dispatch, RecordCodec, RoutingLogEntry
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_all, eventually
from switchboard.common.testing.processes import ServiceProcess
from switchboard.common.topics import Topics, ensure_topics

SERVICES = ("ingest_email", "ingest_social", "router", "notifier")
WEBHOOK_SECRET = "whsec_" + "ZTJlLW9ubHktbm90aWZpZXItc2lnbmluZy1rZXk="  # base64("e2e-only-notifier-signing-key")
WHATSAPP_APP_SECRET = "e2e-only-whatsapp-app-secret"
TRUSTED_RELAY = "mx.e2e.test"
AGENT_MAIL_DOMAIN = "agents.e2e.test"
_CODEC = RecordCodec()


# ---------------------------------------------------------------------------- processes


@dataclass
class Stack:
    """The four services of one test module, with the ports of the receivers they deliver to."""

    prefix: str
    bootstrap: str
    services: dict[str, ServiceProcess]
    smtp_port: int
    receiver_port: int
    mailbox_port: int

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def router(self) -> str:
        return self.services["router"].url

    @property
    def social(self) -> str:
        return self.services["ingest_social"].url

    def receiver_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/{path.lstrip('/')}"

    def start(self, names: Iterable[str] = SERVICES) -> None:
        for name in names:
            self.services[name].start()

    def wait_ready(self, names: Iterable[str] = SERVICES, timeout: float = 60) -> None:
        """Poll every ``/readyz`` until all answer 200 (processes started in parallel, waited together)."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        while pending:
            pending = [n for n in pending if not self.services[n].ready()]
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"not ready within {timeout}s: {pending}")
            if pending:
                time.sleep(0.1)

    def logged(self, needles: Iterable[str]) -> dict[str, list[str]]:
        """Which of ``needles`` (addresses, numbers, message text) each service wrote to its log."""
        found: dict[str, list[str]] = {}
        for name, service in self.services.items():
            text = service.log_path.read_text(encoding="utf-8", errors="replace") if service.log_path.exists() else ""
            hits = [needle for needle in needles if needle in text]
            if hits:
                found[name] = hits
        return found

    def stop(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(Exception):
                service.stop()


def _base_env() -> dict[str, str]:
    """This process's environment without any ``SWITCHBOARD_*`` setting of the developer's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}


def build_stack(
    *,
    bootstrap: str,
    prefix: str,
    workdir: Path,
    rules_yaml: Callable[[str], str],
    whatsapp_tenants: Iterable[str],
    email_tenants: Iterable[str],
) -> Stack:
    """The four services' settings (nothing is started): free ports, this module's prefix and groups."""
    workdir.mkdir(parents=True, exist_ok=True)
    channels = workdir / "channels.yaml"
    tenants = {t: {"secrets": {"app_secret": WHATSAPP_APP_SECRET, "verify_token": "e2e"}} for t in whatsapp_tenants}
    channels.write_text(json.dumps({"adapters": {"whatsapp": {"tenants": tenants}}}), encoding="utf-8")  # JSON is YAML
    ports = {name: free_port() for name in SERVICES}
    smtp_port, receiver_port, mailbox_port = free_port(), free_port(), free_port()
    group = prefix.rstrip(".")
    rules = workdir / "rules.yaml"
    rules.write_text(rules_yaml(f"http://127.0.0.1:{receiver_port}"), encoding="utf-8")
    common = {
        **_base_env(),
        "PYTHONUNBUFFERED": "1",  # each log line reaches the log file as it is written
        "SWITCHBOARD_KAFKA_BOOTSTRAP": bootstrap,
        "SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS": "10",
        "SWITCHBOARD_KAFKA_PARTITIONS": "3",
        "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "SWITCHBOARD_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "SWITCHBOARD_TOPIC_PREFIX": prefix,
        "SWITCHBOARD_HTTP_HOST": "127.0.0.1",
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_SHUTDOWN_GRACE_SECONDS": "5",
    }
    router_url = f"http://127.0.0.1:{ports['router']}"
    specific: dict[str, dict[str, str]] = {
        "ingest_email": {
            "SWITCHBOARD_SMTP_HOST": "127.0.0.1",
            "SWITCHBOARD_SMTP_PORT": str(smtp_port),
            "SWITCHBOARD_RECIPIENTS": json.dumps({f"@{t}.e2e.test": t for t in email_tenants}),
            "SWITCHBOARD_SENDER_VERIFY_DKIM": "false",
            "SWITCHBOARD_SENDER_TRUSTED_AUTHSERV_IDS": json.dumps([TRUSTED_RELAY]),
        },
        "ingest_social": {
            "SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE": str(channels),
            "SWITCHBOARD_INGEST_SOCIAL_DISCOVER_PLUGINS": "false",
        },
        "router": {
            "SWITCHBOARD_RULES_FILE": str(rules),
            "SWITCHBOARD_CONSUMER_GROUP": f"router-{group}",
            "SWITCHBOARD_ADVERTISED_URL": router_url,
            "SWITCHBOARD_TIMER_RESOLUTION_MS": "50",
        },
        "notifier": {
            "SWITCHBOARD_CONSUMER_GROUP": f"notifier-{group}",
            "SWITCHBOARD_EMAIL_SENDER": "switchboard@e2e.test",
            "SWITCHBOARD_SMTP_HOST": "127.0.0.1",
            "SWITCHBOARD_SMTP_PORT": str(mailbox_port),
            "SWITCHBOARD_SMTP_START_TLS": "false",
            "SWITCHBOARD_WEBHOOK_SECRETS": json.dumps([WEBHOOK_SECRET]),
            "SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
            "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true",
            "SWITCHBOARD_INBOX_ENABLED": "false",
            "SWITCHBOARD_ROUTER_URL": router_url,
            "SWITCHBOARD_RETRY_MAX_ATTEMPTS": "20",
            "SWITCHBOARD_RETRY_BASE_SECONDS": "0.1",
            "SWITCHBOARD_RETRY_CAP_SECONDS": "1",
            "SWITCHBOARD_BREAKER_COOLDOWN_SECONDS": "1",
        },
    }
    services = {
        name: ServiceProcess(
            name=name,
            env={**common, "SWITCHBOARD_HTTP_PORT": str(ports[name]), **specific[name]},
            http_port=ports[name],
            log_path=workdir / f"{name}.log",
        )
        for name in SERVICES
    }
    return Stack(prefix, bootstrap, services, smtp_port, receiver_port, mailbox_port)


# ---------------------------------------------------------------------------- receivers


@dataclass(frozen=True)
class Delivery:
    """One verified webhook delivery (the first of its ``webhook-id``)."""

    path: str
    webhook_id: str
    kind: str
    data: dict[str, Any]

    @property
    def tenant(self) -> str:
        return str(self.data["tenant_id"])

    @property
    def agent_id(self) -> str | None:
        agent = self.data.get("agent_id")
        return str(agent) if agent is not None else None

    @property
    def conversation(self) -> dict[str, Any]:
        conversation: dict[str, Any] = self.data["conversation"]
        return conversation

    @property
    def conversation_id(self) -> str:
        return str(self.conversation["conversation_id"])


@dataclass
class WebhookReceiver:
    """An idempotent helpdesk: verifies the Standard Webhooks signature, keeps each ``webhook-id`` once."""

    secret: str
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    posts: int = 0
    rejected: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts += 1
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.rejected += 1
            return web.json_response({"error": f"bad signature: {exc}"}, status=401)
        webhook_id = request.headers["webhook-id"]
        if request.headers.get("Idempotency-Key") != webhook_id:
            self.rejected += 1
            return web.json_response({"error": "Idempotency-Key is not the webhook-id"}, status=400)
        if webhook_id not in self.deliveries:
            kind = str(payload["type"]).removeprefix("dispatch.")
            self.deliveries[webhook_id] = Delivery(request.path.lstrip("/"), webhook_id, kind, payload["data"])
        return web.json_response({"ok": True})

    def of(self, tenant: str, *, kind: str | None = None, path: str | None = None) -> list[Delivery]:
        return [
            d
            for d in self.deliveries.values()
            if d.tenant == tenant and (kind is None or d.kind == kind) and (path is None or d.path == path)
        ]


@dataclass(frozen=True)
class Mail:
    recipients: tuple[str, ...]
    message: Message

    @property
    def dispatch_id(self) -> str:
        return str(self.message["X-Switchboard-Dispatch-Id"])


@dataclass
class Mailbox:
    """The agents' mail server: keeps every message the notifier sends."""

    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # aiosmtpd hook
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.mails.append(Mail(tuple(envelope.rcpt_tos), message_from_bytes(content)))
        return "250 OK"


@dataclass
class Receivers:
    webhooks: WebhookReceiver
    mailbox: Mailbox


@contextlib.asynccontextmanager
async def running_receivers(stack: Stack) -> AsyncIterator[Receivers]:
    """The webhook receiver and the mailbox, on the ports the notifier and the rules were given."""
    receivers = Receivers(WebhookReceiver(WEBHOOK_SECRET), Mailbox())
    app = web.Application()
    app.router.add_post("/{path:.*}", receivers.webhooks.handle)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(receivers.mailbox, hostname=AGENT_MAIL_DOMAIN), "127.0.0.1", stack.mailbox_port
    )
    try:
        async with running_app(app, port=stack.receiver_port):
            yield receivers
    finally:
        smtp.close()
        await smtp.wait_closed()


# ---------------------------------------------------------------------------- customers


def customer_email(
    *, tenant: str, sender: str, subject: str, text: str, message_id: str, verified: bool = True
) -> EmailMessage:
    """A customer's mail to the tenant's support address; ``verified`` adds the trusted relay's DMARC pass."""
    mail = EmailMessage()
    if verified:
        domain = sender.rpartition("@")[2]
        mail["Authentication-Results"] = f"{TRUSTED_RELAY}; dmarc=pass header.from={domain}"
    mail["From"] = sender
    mail["To"] = f"support@{tenant}.e2e.test"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{message_id}>"
    mail["Date"] = email.utils.formatdate()
    mail.set_content(text)
    return mail


async def send_email(stack: Stack, mail: EmailMessage) -> int:
    """Send over real SMTP to ingest_email; the reply code to the end of DATA (250: acknowledged).

    A refusal raises aiosmtplib's ``SMTPResponseException`` (``SMTPDataError``, ...) with the code.
    """
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=stack.smtp_port, timeout=15) as smtp:
        await smtp.mail(str(mail["From"]))
        await smtp.rcpt(str(mail["To"]))
        reply = await smtp.data(mail.as_bytes())
    return int(reply.code)


def whatsapp_body(*, wa_id: str, name: str, wamid: str, text: str) -> bytes:
    """A WhatsApp Cloud API ``messages`` webhook with one text message."""
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
                            "metadata": {"display_phone_number": "15550100000", "phone_number_id": "106540352242922"},
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


async def post_whatsapp(http: aiohttp.ClientSession, stack: Stack, tenant: str, body: bytes) -> int:
    """POST the webhook signed as Meta does (``X-Hub-Signature-256``: hex HMAC-SHA256 with the app secret)."""
    signature = "sha256=" + hmac.new(WHATSAPP_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
    async with http.post(f"{stack.social}/v1/whatsapp/{tenant}", data=body, headers=headers) as answer:
        await answer.read()
        return answer.status


# ---------------------------------------------------------------------------- router API


def webhook_endpoint(stack: Stack, path: str) -> dict[str, Any]:
    return {"kind": "webhook", "target": stack.receiver_url(path)}


def email_endpoint(agent: str) -> dict[str, Any]:
    return {"kind": "email", "target": f"{agent}@{AGENT_MAIL_DOMAIN}"}


async def router_write(http: aiohttp.ClientSession, method: str, url: str, body: Mapping[str, Any]) -> None:
    async with http.request(method, url, json=body) as answer:
        assert answer.status == 202, f"{method} {url}: {answer.status} {await answer.text()}"


async def put_agent(
    http: aiohttp.ClientSession,
    stack: Stack,
    tenant: str,
    agent: str,
    *,
    skills: Mapping[str, int],
    endpoints: list[dict[str, Any]],
    capacity: Mapping[str, int] | None = None,
) -> None:
    body = {
        "display_name": agent.title(),
        "skills": dict(skills),
        "capacity": dict(capacity or {"email": 5, "whatsapp": 5}),
        "presence": "available",
        "endpoints": endpoints,
    }
    await router_write(http, "PUT", f"{stack.router}/v1/tenants/{tenant}/agents/{agent}", body)


async def router_get(http: aiohttp.ClientSession, stack: Stack, path: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{stack.router}{path}") as answer:
        body: dict[str, Any] = await answer.json() if answer.content_type == "application/json" else {}
        return answer.status, body


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.1) -> None:
    """``eventually`` for a condition that takes an await to observe (a router read, for example)."""
    met = False

    async def poll() -> None:
        nonlocal met
        while not (met := await check()):  # noqa: ASYNC110  # polling a read over HTTP or Kafka
            await asyncio.sleep(interval)

    task = asyncio.create_task(poll())
    try:
        await eventually(lambda: task.done(), timeout=timeout)
        task.result()  # a check that raised fails the test with its own error
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert met


async def wait_agents(http: aiohttp.ClientSession, stack: Stack, tenant: str, agents: Iterable[str]) -> None:
    """Until the router has applied each agent's upsert (its read API knows them)."""
    for agent in agents:

        async def known(agent: str = agent) -> bool:
            status, _ = await router_get(http, stack, f"/v1/tenants/{tenant}/agents/{agent}")
            return status == 200

        await until(known)


async def routing_log(stack: Stack, tenant: str) -> list[RoutingLogEntry]:
    """Every routing-log entry of ``tenant`` so far, in order."""
    records = await consume_all(stack.bootstrap, stack.topics.routing_log, idle=0.3)
    entries = [_CODEC.decode(r.value) for r in records]
    return [e for e in entries if isinstance(e, RoutingLogEntry) and e.tenant_id == tenant]


async def dispatches(stack: Stack, tenant: str) -> list[Dispatch]:
    """Every dispatch the router wrote for ``tenant`` so far, in order."""
    records = await consume_all(stack.bootstrap, stack.topics.dispatch, idle=0.3)
    decoded = [_CODEC.decode(r.value) for r in records]
    return [d for d in decoded if isinstance(d, Dispatch) and d.tenant_id == tenant]


@contextlib.contextmanager
def launched(stack: Stack) -> Iterator[Stack]:
    """The stack's topics created, its four processes started together and ready; always stopped after."""
    asyncio.run(ensure_topics(KafkaSettings(bootstrap=stack.bootstrap, partitions=3), stack.topics))
    try:
        stack.start()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
