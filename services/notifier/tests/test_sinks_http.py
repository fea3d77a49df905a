"""The built-in sinks against real receivers on local sockets: HTTP (aiohttp) and SMTP (aiosmtpd)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes
from email import policy as email_policy

import aiohttp
import pytest
from aiohttp import web

from switchboard.common.events import DeliveryEndpoint, DispatchKind, EndpointKind
from switchboard.common.runtime import running_app
from switchboard.notifier.outcome import OutcomeKind
from switchboard.notifier.signing import WebhookSigner
from switchboard.notifier.sinks.mail import EmailSink, MailIdentity, SmtpConfig
from switchboard.notifier.sinks.slack import SlackSink
from switchboard.notifier.sinks.teams import TeamsSink
from switchboard.notifier.sinks.webhook import WebhookSink
from switchboard.notifier.urlguard import GuardedResolver, UrlPolicy

from .conftest import SLACK_TOKEN, WEBHOOK_SECRET  # type: ignore[import-not-found]

LOCAL = UrlPolicy(allowed_hosts=("127.0.0.1", "localhost"), allow_private=True)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --------------------------------------------------------------------------- webhook


async def test_webhook_is_signed_and_carries_the_dispatch_id(make_dispatch, helpdesk, session) -> None:  # type: ignore[no-untyped-def]
    sink = WebhookSink(session, WebhookSigner([WEBHOOK_SECRET]), LOCAL)
    dispatch = make_dispatch(DispatchKind.OFFER)
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=helpdesk.url)
    outcome = await sink.deliver(dispatch, endpoint)
    assert outcome.ok, outcome
    assert helpdesk.accepted == [dispatch.dispatch_id]
    assert helpdesk.bad_signatures == 0
    assert helpdesk.payloads[0]["data"]["offer_id"] == "offer-9"


async def test_webhook_answers_are_classified(make_dispatch, helpdesk, session) -> None:  # type: ignore[no-untyped-def]
    sink = WebhookSink(session, WebhookSigner([WEBHOOK_SECRET]), LOCAL)
    endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=helpdesk.url)
    helpdesk.script.answers = [(429, {}, {"Retry-After": "7"}), (400, {}, {})]
    limited = await sink.deliver(make_dispatch(), endpoint)
    assert (limited.kind, limited.retry_after) == (OutcomeKind.RETRY, 7.0)
    bad = await sink.deliver(make_dispatch(), endpoint)
    assert bad.kind is OutcomeKind.FAILED
    assert bad.error == "webhook answered HTTP 400"


async def test_webhook_to_a_refused_url_is_a_permanent_failure(make_dispatch, helpdesk, session) -> None:  # type: ignore[no-untyped-def]
    strict = WebhookSink(session, WebhookSigner([WEBHOOK_SECRET]), UrlPolicy(allowed_hosts=("127.0.0.1",)))
    outcome = await strict.deliver(make_dispatch(), DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=helpdesk.url))
    assert outcome.kind is OutcomeKind.FAILED
    assert "non-public address" in (outcome.error or "")
    assert helpdesk.requests == 0


async def test_guarded_resolver_refuses_a_name_resolving_to_loopback(make_dispatch, helpdesk) -> None:  # type: ignore[no-untyped-def]
    # The pre-check allows localhost (allow_private), the connector's resolver does not: it
    # is the guard against a name that re-resolves to a private address (DNS rebinding).
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(UrlPolicy(allowed_hosts=("*",))))
    async with aiohttp.ClientSession(connector=connector) as guarded:
        sink = WebhookSink(guarded, WebhookSigner([WEBHOOK_SECRET]), LOCAL)
        url = helpdesk.url.replace("127.0.0.1", "localhost")
        outcome = await sink.deliver(make_dispatch(), DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=url))
    assert outcome.kind is OutcomeKind.FAILED
    assert "non-public address" in (outcome.error or "")
    assert helpdesk.requests == 0


async def test_webhook_does_not_follow_redirects(make_dispatch, session) -> None:  # type: ignore[no-untyped-def]
    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    async with running_app(app) as base:
        sink = WebhookSink(session, WebhookSigner([WEBHOOK_SECRET]), LOCAL)
        outcome = await sink.deliver(
            make_dispatch(), DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=f"{base}/hook")
        )
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.error == "webhook answered HTTP 302"


async def test_unreachable_webhook_is_transient(make_dispatch, session) -> None:  # type: ignore[no-untyped-def]
    sink = WebhookSink(session, WebhookSigner([WEBHOOK_SECRET]), LOCAL, timeout=2.0)
    outcome = await sink.deliver(
        make_dispatch(), DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target="http://127.0.0.1:9/hook")
    )
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.error == "webhook unreachable: ClientConnectorError"


# --------------------------------------------------------------------------- teams


async def test_teams_card_is_posted(make_dispatch, session) -> None:  # type: ignore[no-untyped-def]
    received: list[dict[str, object]] = []

    async def workflow(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/workflows/abc", workflow)
    async with running_app(app) as base:
        sink = TeamsSink(session, LOCAL)
        outcome = await sink.deliver(
            make_dispatch(), DeliveryEndpoint(kind=EndpointKind.TEAMS, target=f"{base}/workflows/abc")
        )
    assert outcome.ok
    assert received[0]["type"] == "message"


# --------------------------------------------------------------------------- slack


async def test_slack_posts_blocks_and_threads_follow_ups(make_dispatch, fake_slack, session) -> None:  # type: ignore[no-untyped-def]
    sink = SlackSink.create(SLACK_TOKEN, session=session, base_url=fake_slack.base_url)
    agent = DeliveryEndpoint(kind=EndpointKind.SLACK, target="U777")
    assignment = await sink.deliver(make_dispatch(DispatchKind.ASSIGNMENT), agent)
    assert assignment.ok
    assert assignment.external_ref == "D777:1700000000.000001"
    follow_up = await sink.deliver(make_dispatch(DispatchKind.FOLLOW_UP), agent)
    assert follow_up.ok
    first, second = fake_slack.posts
    assert first["channel"] == "U777"
    assert "thread_ts" not in first
    assert first["blocks"][0]["type"] == "header"
    assert (second["channel"], second["thread_ts"]) == ("D777", "1700000000.000001")
    assert fake_slack.auth == [f"Bearer {SLACK_TOKEN}"] * 2
    other = await sink.deliver(make_dispatch(DispatchKind.FOLLOW_UP, conversation_id="conv-2"), agent)
    assert other.ok
    assert "thread_ts" not in fake_slack.posts[2]  # no root known for that conversation: a new post


async def test_slack_errors_are_classified(make_dispatch, fake_slack, session) -> None:  # type: ignore[no-untyped-def]
    sink = SlackSink.create(SLACK_TOKEN, session=session, base_url=fake_slack.base_url)
    channel = DeliveryEndpoint(kind=EndpointKind.SLACK, target="C1")
    fake_slack.script.answers = [
        (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"}),
        (200, {"ok": False, "error": "channel_not_found"}, {}),
        (500, {"ok": False, "error": "internal_error"}, {}),
    ]
    limited = await sink.deliver(make_dispatch(), channel)
    assert (limited.kind, limited.retry_after) == (OutcomeKind.RETRY, 3.0)
    missing = await sink.deliver(make_dispatch(), channel)
    assert (missing.kind, missing.error) == (OutcomeKind.FAILED, "slack error channel_not_found (HTTP 200)")
    broken = await sink.deliver(make_dispatch(), channel)
    assert broken.kind is OutcomeKind.RETRY


# --------------------------------------------------------------------------- email


async def test_email_is_received_over_smtp(make_dispatch, smtp_inbox) -> None:  # type: ignore[no-untyped-def]
    sink = EmailSink(
        SmtpConfig(hostname=smtp_inbox.host, port=smtp_inbox.port, start_tls=False),
        MailIdentity(sender="switchboard@support.example.com"),
    )
    dispatch = make_dispatch(DispatchKind.OFFER, subject="Refund\r\nBcc: someone@example.com")
    outcome = await sink.deliver(dispatch, DeliveryEndpoint(kind=EndpointKind.EMAIL, target="agent@example.com"))
    assert outcome.ok, outcome
    (envelope,) = smtp_inbox.messages
    assert envelope.rcpt_tos == ["agent@example.com"]
    message = message_from_bytes(envelope.original_content or b"", policy=email_policy.default)
    assert message["Reply-To"] == "support+tok123@support.example.com"
    assert message["Bcc"] is None
    assert message["Message-ID"] == f"<{dispatch.dispatch_id}@support.example.com>"


async def test_email_smtp_refusals_are_classified(make_dispatch, smtp_inbox) -> None:  # type: ignore[no-untyped-def]
    sink = EmailSink(
        SmtpConfig(hostname=smtp_inbox.host, port=smtp_inbox.port, start_tls=False),
        MailIdentity(sender="switchboard@support.example.com"),
    )
    endpoint = DeliveryEndpoint(kind=EndpointKind.EMAIL, target="agent@example.com")
    smtp_inbox.refuse_with = "451 try later"
    assert (await sink.deliver(make_dispatch(), endpoint)).kind is OutcomeKind.RETRY
    smtp_inbox.refuse_with = "554 no"
    refused = await sink.deliver(make_dispatch(), endpoint)
    assert refused.kind is OutcomeKind.FAILED
    assert refused.error == "smtp answered 554 (SMTPDataError)"
    bad = await sink.deliver(make_dispatch(), endpoint.model_copy(update={"target": "bad\r\nx@example.com"}))
    assert bad.kind is OutcomeKind.FAILED
    down = EmailSink(SmtpConfig(hostname="127.0.0.1", port=9, timeout=2), MailIdentity(sender="s@example.com"))
    assert (await down.deliver(make_dispatch(), endpoint)).kind is OutcomeKind.RETRY
