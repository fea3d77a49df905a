"""The notifier service end to end: a real broker, real HTTP and SMTP receivers started here."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email import message_from_bytes
from email import policy as email_policy
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from switchboard.common.events import (
    DeadLetter,
    DeliveryEndpoint,
    DeliveryResult,
    DeliveryStatus,
    Dispatch,
    DispatchKind,
    EndpointKind,
    OfferAccepted,
    Record,
    RecordCodec,
)
from switchboard.common.kafka import RecordProducer
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_records, eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.notifier.app import NOTIFIER, build_app
from switchboard.notifier.callbacks import INTERACTIVITY_PATH
from switchboard.notifier.settings import NotifierSettings
from switchboard.notifier.sinks.slack import ACTION_ACCEPT, ButtonValue

from .conftest import SLACK_TOKEN, WEBHOOK_SECRET, HelpdeskReceiver  # type: ignore[import-not-found]

pytestmark = pytest.mark.broker

SIGNING_SECRET = "e2e-signing-secret-0123456789"
CODEC = RecordCodec()


@pytest.fixture
def settings_for(
    kafka_settings: KafkaSettings, topic_prefix: str, fake_slack, smtp_inbox
) -> Callable[..., NotifierSettings]:  # type: ignore[no-untyped-def]
    group = f"notifier-{uuid.uuid4().hex[:8]}"

    def make(**overrides: Any) -> NotifierSettings:
        values: dict[str, Any] = {
            "topic_prefix": topic_prefix,
            "kafka": kafka_settings,
            "consumer_group": group,
            "http_port": 0,
            "slack_token": SecretStr(SLACK_TOKEN),
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
            "slack_api_url": fake_slack.base_url,
            "slack_posts_per_second": 100.0,
            "email_sender": "switchboard@support.example.com",
            "smtp_host": smtp_inbox.host,
            "smtp_port": smtp_inbox.port,
            "smtp_start_tls": False,
            "webhook_secrets": [SecretStr(WEBHOOK_SECRET)],
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_allow_private": True,
            "retry_max_attempts": 4,
            "retry_base_seconds": 0.01,
            "retry_cap_seconds": 0.05,
        }
        values.update(overrides)
        return NotifierSettings(**values)

    return make


@asynccontextmanager
async def notifier(settings: NotifierSettings) -> AsyncIterator[tuple[web.Application, str]]:
    app = build_app(settings)
    async with running_app(app) as base:
        await eventually(lambda: app[NOTIFIER].handler.ready.is_set(), timeout=30)
        yield app, base


async def produce(kafka_settings: KafkaSettings, topic: str, *records: Record) -> None:
    async with RecordProducer(kafka_settings) as producer:
        for record in records:  # one at a time: keeps their order on the tenant's partition
            await producer.send(topic, record)


def _results(records: list[Record]) -> list[DeliveryResult]:
    return [r for r in records if isinstance(r, DeliveryResult)]


async def test_each_dispatch_is_delivered_once_in_order_and_not_again_after_a_restart(  # type: ignore[no-untyped-def]
    settings_for, kafka_settings, topic_prefix, make_dispatch, fake_slack, smtp_inbox, helpdesk
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics, partitions=3)
    endpoints = (
        DeliveryEndpoint(kind=EndpointKind.SLACK, target="U42"),
        DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=helpdesk.url),
        DeliveryEndpoint(kind=EndpointKind.EMAIL, target="agent@example.com"),
    )
    assignment = make_dispatch(DispatchKind.ASSIGNMENT, endpoints, conversation_id="conv-a")
    follow_up = make_dispatch(DispatchKind.FOLLOW_UP, endpoints, conversation_id="conv-a")
    other = make_dispatch(DispatchKind.OFFER, endpoints, conversation_id="conv-b")
    inbox_only = make_dispatch(endpoints=(DeliveryEndpoint(kind=EndpointKind.INBOX, target="support"),))
    settings = settings_for()
    async with notifier(settings) as (app, _base):
        # The assignment is consumed twice (an at-least-once redelivery): it must be sent once.
        await produce(kafka_settings, topics.dispatch, assignment, follow_up, other, assignment, inbox_only)
        records = await consume_records(kafka_settings.bootstrap, topics.delivery, count=13, timeout=30)
        inbox = app[NOTIFIER].inbox
        assert inbox is not None
        assert [i.dispatch_id for i in inbox.items("acme", "support")] == [inbox_only.dispatch_id]
    results = _results(records)
    by_status: dict[DeliveryStatus, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    assert by_status == {DeliveryStatus.DELIVERED: 10, DeliveryStatus.DUPLICATE: 3}
    (inbox_result,) = [r for r in results if r.endpoint.kind is EndpointKind.INBOX]
    assert (inbox_result.status, inbox_result.external_ref) == (DeliveryStatus.DELIVERED, "inbox:1")

    # Each receiver saw each dispatch exactly once; conversations are delivered concurrently, so
    # only one conversation's order is fixed: the follow-up after its assignment.
    def conv_a_first(ids: list[str]) -> bool:
        return ids.index(assignment.dispatch_id) < ids.index(follow_up.dispatch_id)

    expected = {assignment.dispatch_id, follow_up.dispatch_id, other.dispatch_id}
    assert sorted(helpdesk.accepted) == sorted(expected)
    assert conv_a_first(helpdesk.accepted)
    assert helpdesk.requests == 3
    assert helpdesk.bad_signatures == 0
    assert len(fake_slack.posts) == 3
    assert len(smtp_inbox.messages) == 3
    ids = [
        message_from_bytes(m.original_content or b"", policy=email_policy.default)["X-Switchboard-Dispatch-Id"]
        for m in smtp_inbox.messages
    ]
    assert sorted(ids) == sorted(expected)
    assert conv_a_first(ids)
    # The follow-up came after its assignment and is threaded under it.
    posts = {p["metadata"]["event_payload"]["dispatch_id"]: (i, p) for i, p in enumerate(fake_slack.posts)}
    (first_index, first_post), (follow_index, follow_post) = posts[assignment.dispatch_id], posts[follow_up.dispatch_id]
    assert first_index < follow_index
    assert "thread_ts" not in first_post
    assert "thread_ts" not in posts[other.dispatch_id][1]
    first_ts = f"1700000000.{first_index + 1:06d}"  # the fake Slack numbers its posts in arrival order
    assert (follow_post["channel"], follow_post["thread_ts"]) == ("D42", first_ts)

    # A restarted notifier rebuilds what was delivered from delivery.v1: nothing is sent twice,
    # and a later follow-up still threads under the original post.
    later = make_dispatch(DispatchKind.FOLLOW_UP, endpoints[:1], conversation_id="conv-a")
    async with notifier(settings_for()) as (app, _base):
        assert len(app[NOTIFIER].store) == 10
        await produce(kafka_settings, topics.dispatch, other, later)
        records = await consume_records(kafka_settings.bootstrap, topics.delivery, count=17, timeout=30)
    replayed = _results(records)[13:]
    assert [r.status for r in replayed] == [DeliveryStatus.DUPLICATE] * 3 + [DeliveryStatus.DELIVERED]
    assert helpdesk.requests == 3
    assert len(smtp_inbox.messages) == 3
    assert len(fake_slack.posts) == 4
    assert fake_slack.posts[3]["thread_ts"] == first_ts


async def test_flaky_receiver_gets_one_delivery_and_a_dead_one_a_dead_letter(  # type: ignore[no-untyped-def]
    settings_for, kafka_settings, topic_prefix, make_dispatch
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics, partitions=3)
    flaky, down = HelpdeskReceiver(), HelpdeskReceiver(always_fail=True)
    flaky.script.answers = [(503, {}, {}), (500, {}, {}), (429, {}, {"Retry-After": "0"})]
    receivers = web.Application()
    receivers.router.add_post("/flaky", flaky.handle)
    receivers.router.add_post("/down", down.handle)
    async with running_app(receivers) as base:
        to_flaky = make_dispatch(endpoints=(DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=f"{base}/flaky"),))
        to_down = make_dispatch(
            DispatchKind.OFFER,
            (DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=f"{base}/down"),),
            conversation_id="conv-down",
        )
        async with notifier(settings_for()):
            await produce(kafka_settings, topics.dispatch, to_flaky, to_down)
            results = _results(await consume_records(kafka_settings.bootstrap, topics.delivery, count=2, timeout=30))
            letters = await consume_records(kafka_settings.bootstrap, topics.dlq, count=1, timeout=30)
    # two conversations on their own lanes (and partitions): their results may land in either order
    by_id = {r.dispatch_id: r for r in results}
    delivered, failed = by_id[to_flaky.dispatch_id], by_id[to_down.dispatch_id]
    assert (delivered.dispatch_id, delivered.status, delivered.attempts) == (
        to_flaky.dispatch_id,
        DeliveryStatus.DELIVERED,
        4,
    )
    assert flaky.requests == 4
    assert flaky.accepted == [to_flaky.dispatch_id]
    assert (failed.dispatch_id, failed.status, failed.attempts) == (to_down.dispatch_id, DeliveryStatus.FAILED, 4)
    assert failed.error == "webhook answered HTTP 503"
    assert failed.dispatch_kind is DispatchKind.OFFER  # the router can re-route the offer
    assert down.requests == 4
    (letter,) = letters
    assert isinstance(letter, DeadLetter)
    assert (letter.source_topic, letter.error_type, letter.attempts, letter.tenant_id) == (
        topics.dispatch,
        "DeliveryFailed",
        4,
        "acme",
    )
    replay = CODEC.decode(letter.source_value or b"")
    assert isinstance(replay, Dispatch)
    assert replay.dispatch_id == to_down.dispatch_id


async def test_signed_slack_click_becomes_an_accept_event_and_a_forged_one_is_refused(  # type: ignore[no-untyped-def]
    settings_for, kafka_settings, topic_prefix
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics, partitions=3)
    value = ButtonValue("acme", "conv-9", "offer-3", "agent-7").encode()
    payload = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "trigger_id": "tr-1",
        "actions": [{"action_id": ACTION_ACCEPT, "value": value}],
    }
    body = urlencode({"payload": orjson.dumps(payload).decode()}).encode()
    timestamp = str(int(time.time()))

    def headers(secret: str) -> dict[str, str]:
        signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
        assert signature is not None
        return {
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        }

    async with notifier(settings_for()) as (_app, base), aiohttp.ClientSession() as http:
        async with http.post(f"{base}{INTERACTIVITY_PATH}", data=body, headers=headers("forged-secret")) as forged:
            assert forged.status == 401
            assert (await forged.json()) == {"error": "invalid or expired Slack signature"}
        async with http.post(f"{base}{INTERACTIVITY_PATH}", data=body, headers=headers(SIGNING_SECRET)) as ok:
            assert ok.status == 200, await ok.text()
        events = await consume_records(kafka_settings.bootstrap, topics.agent_events, count=1, timeout=20)
    (event,) = events
    assert isinstance(event, OfferAccepted)
    assert (event.tenant_id, event.agent_id, event.conversation_id, event.offer_id, event.source) == (
        "acme",
        "agent-7",
        "conv-9",
        "offer-3",
        "slack",
    )
