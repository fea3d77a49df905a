"""Slack interactivity: signed clicks become agent events, forged or stale ones are refused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from switchboard.common.events import ConversationResolved, OfferAccepted, OfferDeclined, Record
from switchboard.common.kafka.producer import BrokerUnavailable
from switchboard.common.runtime import running_app
from switchboard.notifier.callbacks import INTERACTIVITY_PATH, SlackInteractivity, add_callback_routes
from switchboard.notifier.sinks.slack import ACTION_ACCEPT, ACTION_DECLINE, ACTION_RESOLVE, ButtonValue

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class ListPublisher:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.down = False

    async def publish(self, record: Record) -> None:
        if self.down:
            raise BrokerUnavailable("broker away")
        self.records.append(record)


def click(action_id: str, value: str | None = None, trigger: str = "trig-1") -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U777"},
        "trigger_id": trigger,
        "actions": [
            {
                "action_id": action_id,
                "value": value or ButtonValue("acme", "conv-1", "offer-9", "agent-7").encode(),
                "action_ts": "1700000000.1",
            }
        ],
    }
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def signed(body: bytes, *, secret: str = SIGNING_SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


@pytest.fixture
def publisher() -> ListPublisher:
    return ListPublisher()


@pytest.fixture
async def endpoint(publisher: ListPublisher) -> AsyncIterator[str]:
    app = web.Application()
    add_callback_routes(app, SlackInteractivity(SIGNING_SECRET, publisher))
    async with running_app(app) as base:
        yield f"{base}{INTERACTIVITY_PATH}"


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("action", "event_type"),
    [(ACTION_ACCEPT, OfferAccepted), (ACTION_DECLINE, OfferDeclined), (ACTION_RESOLVE, ConversationResolved)],
)
async def test_signed_click_becomes_the_agent_event(endpoint, publisher, action, event_type) -> None:  # type: ignore[no-untyped-def]
    body = click(action)
    status, answer = await _post(endpoint, body, signed(body))
    assert status == 200, answer
    (event,) = publisher.records
    assert isinstance(event, event_type)
    assert (event.tenant_id, event.agent_id, event.source) == ("acme", "agent-7", "slack")
    assert event.conversation_id == "conv-1"  # type: ignore[attr-defined]
    if not isinstance(event, ConversationResolved):
        assert event.offer_id == "offer-9"  # type: ignore[attr-defined]
    assert answer == {"ok": True, "event_id": event.id}


async def test_the_same_click_twice_has_one_event_id(endpoint, publisher) -> None:  # type: ignore[no-untyped-def]
    body = click(ACTION_ACCEPT, trigger="t-42")
    await _post(endpoint, body, signed(body))
    await _post(endpoint, body, signed(body))
    first, second = publisher.records
    assert first.id == second.id


async def test_forged_signature_is_refused(endpoint, publisher) -> None:  # type: ignore[no-untyped-def]
    body = click(ACTION_ACCEPT)
    status, answer = await _post(endpoint, body, signed(body, secret="not-the-secret"))
    assert (status, answer) == (401, {"error": "invalid or expired Slack signature"})
    tampered = click(ACTION_ACCEPT, ButtonValue("other", "conv-1", "offer-9", "agent-7").encode())
    status, _ = await _post(endpoint, tampered, signed(body))
    assert status == 401
    assert publisher.records == []


async def test_stale_request_is_refused(endpoint, publisher) -> None:  # type: ignore[no-untyped-def]
    body = click(ACTION_ACCEPT)
    status, answer = await _post(endpoint, body, signed(body, at=time.time() - 400))
    assert (status, answer) == (401, {"error": "invalid or expired Slack signature"})
    status, _ = await _post(endpoint, body, signed(body, at=time.time() + 400))
    assert status == 401
    assert publisher.records == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "1700000000"},
    ],
)
async def test_missing_or_malformed_headers_are_refused(endpoint, publisher, headers) -> None:  # type: ignore[no-untyped-def]
    status, answer = await _post(endpoint, click(ACTION_ACCEPT), headers)
    assert status == 401
    assert "error" in answer


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"payload=%7Bnot json", "payload is not JSON"),
        (b"nothing=here", "form has no payload field"),
        (
            urlencode({"payload": '{"type": "view_submission"}'}).encode(),
            "unsupported interaction type 'view_submission'",
        ),
        (click("someone.else"), "unknown action"),
        (click(ACTION_ACCEPT, '{"x": 1}'), "bad action value: button value lacks tenant or conversation"),
        (click(ACTION_ACCEPT, ButtonValue("Not A Tenant!", "c", None, "a").encode()), None),
    ],
)
async def test_signed_but_bad_payloads_get_a_400(endpoint, publisher, body, error) -> None:  # type: ignore[no-untyped-def]
    status, answer = await _post(endpoint, body, signed(body))
    assert status == 400
    if error is not None:
        assert answer == {"error": error}
    else:
        assert answer["error"].startswith("action value does not make a valid event")
    assert publisher.records == []


async def test_broker_down_is_a_503(endpoint, publisher) -> None:  # type: ignore[no-untyped-def]
    publisher.down = True
    body = click(ACTION_ACCEPT)
    status, answer = await _post(endpoint, body, signed(body))
    assert status == 503
    assert "try again" in answer["error"]


async def test_injected_clock_sets_the_window(publisher) -> None:  # type: ignore[no-untyped-def]
    handler_now = 1_700_000_000.0
    app = web.Application()
    add_callback_routes(app, SlackInteractivity(SIGNING_SECRET, publisher, clock=lambda: handler_now))
    body = click(ACTION_RESOLVE)
    async with running_app(app) as base:
        ok, _ = await _post(f"{base}{INTERACTIVITY_PATH}", body, signed(body, at=handler_now - 299))
        late, _ = await _post(f"{base}{INTERACTIVITY_PATH}", body, signed(body, at=handler_now - 301))
    assert (ok, late) == (200, 401)
