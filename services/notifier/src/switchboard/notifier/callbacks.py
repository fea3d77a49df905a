"""Slack interactivity: Accept / Decline / Resolve clicks become agent events.

Slack POSTs ``application/x-www-form-urlencoded`` with one ``payload`` field, signed with
the app's signing secret: ``X-Slack-Signature = v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))``
and ``X-Slack-Request-Timestamp``. A request outside the 5-minute window or with a wrong
signature is refused with 401 before its body is parsed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web
from slack_sdk.signature import Clock, SignatureVerifier

from switchboard.common.events import (
    ConversationResolved,
    OfferAccepted,
    OfferDeclined,
    Record,
    ValidationError,
)
from switchboard.common.kafka.producer import BrokerUnavailable
from switchboard.common.logging import get_logger
from switchboard.notifier.publisher import Publisher
from switchboard.notifier.sinks.slack import ACTION_ACCEPT, ACTION_DECLINE, ACTION_RESOLVE, ButtonValue

log = get_logger(__name__)

INTERACTIVITY_PATH = "/slack/interactivity"


class _InjectedClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class CallbackError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def verify_slack_request(
    verifier: SignatureVerifier, body: bytes, timestamp: str | None, signature: str | None
) -> None:
    """Raises :class:`CallbackError` (401) unless the request is Slack's and fresh."""
    if not timestamp or not signature:
        raise CallbackError(401, "missing Slack signature headers")
    try:
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except ValueError:  # a non-numeric timestamp
        valid = False
    if not valid:
        raise CallbackError(401, "invalid or expired Slack signature")


def event_for_action(payload: dict[str, Any]) -> Record:
    """The agent event for a ``block_actions`` payload; raises :class:`CallbackError` (400) otherwise."""
    if payload.get("type") != "block_actions":
        raise CallbackError(400, f"unsupported interaction type {str(payload.get('type'))[:40]!r}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise CallbackError(400, "payload has no actions")
    action = actions[0]
    action_id = action.get("action_id")
    if action_id not in (ACTION_ACCEPT, ACTION_DECLINE, ACTION_RESOLVE):
        raise CallbackError(400, "unknown action")
    raw_value = action.get("value")
    if not isinstance(raw_value, str):
        raise CallbackError(400, "action has no value")
    try:
        value = ButtonValue.decode(raw_value)
    except ValueError as exc:
        raise CallbackError(400, f"bad action value: {exc}") from None
    user = payload.get("user")
    slack_user = user.get("id") if isinstance(user, dict) else None
    agent_id = value.agent_id or (f"slack:{slack_user}" if isinstance(slack_user, str) and slack_user else None)
    if agent_id is None:
        raise CallbackError(400, "cannot tell which agent clicked")
    common: dict[str, Any] = {
        "tenant_id": value.tenant_id,
        "agent_id": agent_id,
        "source": "slack",
        "conversation_id": value.conversation_id,
    }
    trigger = payload.get("trigger_id") or action.get("action_ts")
    if isinstance(trigger, str) and trigger:
        # A stable id: the same click delivered twice is one event to the router.
        common["id"] = hashlib.sha256(f"slack:{trigger}:{action_id}".encode()).hexdigest()[:32]
    try:
        if action_id == ACTION_ACCEPT:
            return OfferAccepted(offer_id=value.offer_id, **common)
        if action_id == ACTION_DECLINE:
            return OfferDeclined(offer_id=value.offer_id, reason="declined in Slack", **common)
        return ConversationResolved(**common)
    except ValidationError as exc:
        raise CallbackError(400, f"action value does not make a valid event ({exc.error_count()} errors)") from None


def parse_payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise CallbackError(400, "body is not a form") from None
    payloads = form.get("payload")
    if not payloads:
        raise CallbackError(400, "form has no payload field")
    try:
        payload = orjson.loads(payloads[0])
    except orjson.JSONDecodeError:
        raise CallbackError(400, "payload is not JSON") from None
    if not isinstance(payload, dict):
        raise CallbackError(400, "payload is not an object")
    return payload


class SlackInteractivity:
    """The handler of ``POST /slack/interactivity``."""

    def __init__(self, signing_secret: str, publisher: Publisher, *, clock: Callable[[], float] = time.time) -> None:
        self._verifier = SignatureVerifier(signing_secret, clock=_InjectedClock(clock))
        self._publisher = publisher

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_slack_request(
                self._verifier,
                body,
                request.headers.get("X-Slack-Request-Timestamp"),
                request.headers.get("X-Slack-Signature"),
            )
            event = event_for_action(parse_payload(body))
        except CallbackError as exc:
            log.info("slack callback refused", status=exc.status, reason=exc.error)
            return web.json_response({"error": exc.error}, status=exc.status)
        try:
            await self._publisher.publish(event)
        except BrokerUnavailable:
            log.warning("slack callback not recorded: broker unavailable")
            return web.json_response({"error": "cannot record the action now, try again"}, status=503)
        log.info("slack action recorded", schema=event.schema_id(), event_id=event.id, tenant=event.tenant_id)
        return web.json_response({"ok": True, "event_id": event.id})


SLACK_INTERACTIVITY = web.AppKey("slack_interactivity", SlackInteractivity)


def add_callback_routes(app: web.Application, interactivity: SlackInteractivity) -> None:
    app[SLACK_INTERACTIVITY] = interactivity
    app.router.add_post(INTERACTIVITY_PATH, interactivity.handle)
