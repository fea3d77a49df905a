"""Fixtures of the notifier tests: dispatch factories, fake clocks and sleeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from switchboard.common.events import (
    Channel,
    ConversationSummary,
    DeliveryEndpoint,
    Dispatch,
    DispatchKind,
    EndpointKind,
    EscalationInfo,
)

DispatchFactory = Callable[..., Dispatch]


@pytest.fixture
def make_dispatch() -> DispatchFactory:
    def make(
        kind: DispatchKind = DispatchKind.ASSIGNMENT,
        endpoints: tuple[DeliveryEndpoint, ...] | None = None,
        *,
        conversation_id: str = "conv-1",
        tenant_id: str = "acme",
        **conversation: Any,
    ) -> Dispatch:
        extra: dict[str, Any] = {}
        if kind is DispatchKind.OFFER:
            extra = {"offer_id": "offer-9", "offer_expires_at": datetime(2026, 1, 1, 12, 5, tzinfo=UTC)}
        if kind in (DispatchKind.ESCALATION, DispatchKind.SLA_WARNING):
            extra = {
                "escalation": EscalationInfo(
                    policy="gold", target="first_response", step="warn", due_at=datetime(2026, 1, 1, 13, tzinfo=UTC)
                )
            }
        summary = {
            "conversation_id": conversation_id,
            "channel": Channel.EMAIL,
            "customer_name": "Dana Customer",
            "subject": "Order 1234 never arrived",
            "preview": "Hello,\nmy order has not arrived yet.",
            "sla_due_at": datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(hours=1),
            "link": "https://desk.example.com/c/conv-1",
            "reply_token": "tok123",
        }
        summary.update(conversation)
        return Dispatch(
            tenant_id=tenant_id,
            kind=kind,
            agent_id="agent-7",
            conversation=ConversationSummary(**summary),
            endpoints=endpoints or (DeliveryEndpoint(kind=EndpointKind.SLACK, target="C123"),),
            **extra,
        )

    return make


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An injected sleep: records the delays and advances a fake clock instead of waiting."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


# --------------------------------------------------------------------------- real receivers

import asyncio  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import orjson  # noqa: E402
from aiohttp import web  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402
from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: E402

from switchboard.common.runtime import running_app  # noqa: E402

WEBHOOK_SECRET = "whsec_" + "aGVscGRlc2stc2VjcmV0LWhlbHBkZXNrLXNlY3JldA=="
SLACK_TOKEN = "xoxb-test-token"


@dataclass
class Scripted:
    """Answers to give before the default one: (status, json body, headers)."""

    answers: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def next(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        return self.answers.pop(0) if self.answers else None


@dataclass
class HelpdeskReceiver:
    """A helpdesk webhook: verifies Standard Webhooks signatures, counts requests and accepted ids."""

    url: str = ""
    script: Scripted = field(default_factory=Scripted)
    always_fail: bool = False
    requests: int = 0
    bad_signatures: int = 0
    accepted: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        try:
            payload = Webhook(WEBHOOK_SECRET).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.bad_signatures += 1
            return web.json_response({"error": str(exc)}, status=401)
        if self.always_fail:
            return web.json_response({"error": "down"}, status=503)
        answer = self.script.next()
        if answer is not None:
            return web.json_response(answer[1], status=answer[0], headers=answer[2])
        msg_id = request.headers["webhook-id"]
        if msg_id not in self.accepted:  # an idempotent receiver: the id is the key
            self.accepted.append(msg_id)
            self.payloads.append(payload)
        return web.json_response({"ok": True})


@dataclass
class FakeSlack:
    """Stands in for the Slack Web API's chat.postMessage."""

    base_url: str = ""
    script: Scripted = field(default_factory=Scripted)
    posts: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)

    async def post_message(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        body = await request.json()
        answer = self.script.next()
        if answer is not None:
            return web.json_response(answer[1], status=answer[0], headers=answer[2])
        self.posts.append(body)
        channel = body["channel"]
        if channel.startswith("U"):
            channel = "D" + channel[1:]  # a DM channel, as Slack answers for a user id
        return web.json_response({"ok": True, "channel": channel, "ts": f"1700000000.{len(self.posts):06d}"})


@dataclass
class SmtpInbox:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Envelope] = field(default_factory=list)
    refuse_with: str | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_with:
            return self.refuse_with
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
async def helpdesk() -> AsyncIterator[HelpdeskReceiver]:
    receiver = HelpdeskReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with running_app(app) as base:
        receiver.url = f"{base}/hook"
        yield receiver


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", slack.post_message)
    async with running_app(app) as base:
        slack.base_url = f"{base}/api/"
        yield slack


@pytest.fixture
async def smtp_inbox() -> AsyncIterator[SmtpInbox]:
    inbox = SmtpInbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox, hostname="mx.test"), "127.0.0.1", 0)
    inbox.port = server.sockets[0].getsockname()[1]
    try:
        yield inbox
    finally:
        server.close()
        await server.wait_closed()


def slack_json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
