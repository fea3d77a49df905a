"""Slack: a Block Kit post per dispatch, follow-ups threaded under the first post."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import orjson
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from switchboard.common.events import DeliveryEndpoint, Dispatch, DispatchKind, EndpointKind
from switchboard.notifier.outcome import DeliveryOutcome, parse_retry_after
from switchboard.notifier.render import clean_multiline, facts, headline, one_line, truncate, wants_actions
from switchboard.notifier.sink import BaseSink, RateLimit

ACTION_ACCEPT = "switchboard.accept"
ACTION_DECLINE = "switchboard.decline"
ACTION_RESOLVE = "switchboard.resolve"

# Slack errors (HTTP 200, ok=false) that a later attempt may get past.
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
DEFAULT_RATE = RateLimit(rate=1.0, burst=1.0)
"""About one post per second per channel, as Slack asks of chat.postMessage."""
_ROOT_KINDS = frozenset({DispatchKind.OFFER, DispatchKind.ASSIGNMENT})


@dataclass(frozen=True, slots=True)
class ButtonValue:
    """What an Accept/Decline/Resolve button carries back to the interactivity endpoint."""

    tenant_id: str
    conversation_id: str
    offer_id: str | None
    agent_id: str | None

    def encode(self) -> str:
        return orjson.dumps(
            {"t": self.tenant_id, "c": self.conversation_id, "o": self.offer_id, "a": self.agent_id}
        ).decode()

    @classmethod
    def decode(cls, raw: str) -> ButtonValue:
        """Raises ``ValueError`` for a value this notifier did not write."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValueError("button value is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("button value is not an object")
        tenant, conv, offer, agent = data.get("t"), data.get("c"), data.get("o"), data.get("a")
        if not isinstance(tenant, str) or not isinstance(conv, str):
            raise ValueError("button value lacks tenant or conversation")
        if not isinstance(offer, str | None) or not isinstance(agent, str | None):
            raise ValueError("button value has a malformed offer or agent")
        return cls(tenant, conv, offer, agent)


class SlackThreads:
    """Where each conversation's first post went, per Slack target, so follow-ups thread under it.

    Filled as posts succeed and, on start, from the ``external_ref`` (``channel:ts``) of the
    delivered results on ``delivery.v1``.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._roots: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._max = max_entries

    def root(self, tenant_id: str, conversation_id: str, target: str) -> tuple[str, str] | None:
        return self._roots.get((tenant_id, conversation_id, target))

    def remember(self, tenant_id: str, conversation_id: str, target: str, channel: str, ts: str) -> None:
        key = (tenant_id, conversation_id, target)
        self._roots.pop(key, None)
        self._roots[key] = (channel, ts)
        while len(self._roots) > self._max:
            del self._roots[next(iter(self._roots))]

    def remember_ref(self, tenant_id: str, conversation_id: str, target: str, external_ref: str) -> None:
        channel, sep, ts = external_ref.partition(":")
        if sep and channel and ts:
            self.remember(tenant_id, conversation_id, target, channel, ts)


def _mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_blocks(dispatch: Dispatch) -> list[dict[str, Any]]:
    """The Block Kit content of a dispatch (within Slack's per-field limits)."""
    conv = dispatch.conversation
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(headline(dispatch), 150)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": truncate(f"*{f.label}*\n{_mrkdwn_escape(f.value)}", 2000)}
                for f in facts(dispatch)[:10]
            ],
        },
    ]
    if conv.preview:
        quoted = "\n".join(f"> {line}" for line in _mrkdwn_escape(clean_multiline(conv.preview)).split("\n"))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(quoted, 2900)}})
    elements: list[dict[str, Any]] = []
    accept, decline, resolve = wants_actions(dispatch)
    value = ButtonValue(dispatch.tenant_id, conv.conversation_id, dispatch.offer_id, dispatch.agent_id).encode()
    if accept:
        elements.append(_button("Accept", ACTION_ACCEPT, value, "primary"))
    if decline:
        elements.append(_button("Decline", ACTION_DECLINE, value, "danger"))
    if resolve:
        elements.append(_button("Resolve", ACTION_RESOLVE, value, None))
    if conv.link and conv.link.startswith(("https://", "http://")) and len(conv.link) <= 3000:
        elements.append(
            {
                "type": "button",
                "action_id": "switchboard.open",
                "text": {"type": "plain_text", "text": "Open"},
                "url": conv.link,
            }
        )
    if elements:
        blocks.append({"type": "actions", "block_id": "switchboard.actions", "elements": elements})
    return blocks


def _button(label: str, action_id: str, value: str, style: str | None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def fallback_text(dispatch: Dispatch) -> str:
    """The notification text (shown in push notifications and by screen readers)."""
    subject = dispatch.conversation.subject
    text = headline(dispatch) + (f": {one_line(subject, 150)}" if subject else "")
    return _mrkdwn_escape(text)


class SlackSink(BaseSink):
    """Posts with ``chat.postMessage``; the endpoint target is a channel or user id."""

    kind: ClassVar[EndpointKind] = EndpointKind.SLACK

    def __init__(
        self,
        client: AsyncWebClient,
        threads: SlackThreads | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE,
    ) -> None:
        self._client = client
        self.threads = threads if threads is not None else SlackThreads()
        self.rate_limit = rate_limit

    @classmethod
    def create(
        cls,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        base_url: str = "https://slack.com/api/",
        timeout: int = 10,
        threads: SlackThreads | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE,
    ) -> SlackSink:
        # retry_handlers=[]: the notifier's own retry policy decides, with Retry-After.
        client = AsyncWebClient(token=token, base_url=base_url, session=session, timeout=timeout, retry_handlers=[])
        return cls(client, threads, rate_limit)

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        conv = dispatch.conversation
        root = None
        if dispatch.kind not in _ROOT_KINDS:
            root = self.threads.root(dispatch.tenant_id, conv.conversation_id, endpoint.target)
        try:
            response = await self._client.chat_postMessage(
                channel=root[0] if root else endpoint.target,
                text=fallback_text(dispatch),
                blocks=build_blocks(dispatch),
                thread_ts=root[1] if root else None,
                unfurl_links=False,
                metadata={
                    "event_type": "switchboard_dispatch",
                    "event_payload": {"dispatch_id": dispatch.dispatch_id},
                },
            )
        except SlackApiError as exc:
            return _classify(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return DeliveryOutcome.retry(f"slack unreachable: {type(exc).__name__}")
        channel, ts = response.get("channel"), response.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            return DeliveryOutcome.failed("slack answered ok without channel and ts")
        if root is None:
            self.threads.remember(dispatch.tenant_id, conv.conversation_id, endpoint.target, channel, ts)
        return DeliveryOutcome.delivered(f"{channel}:{ts}")


def _classify(exc: SlackApiError) -> DeliveryOutcome:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    error = f"slack error {code or 'unknown'} (HTTP {status})"
    headers = getattr(response, "headers", None) or {}
    retry_after = parse_retry_after(_header(headers, "Retry-After"))
    if status in (429, 503) or status >= 500 or code in _TRANSIENT_ERRORS:
        return DeliveryOutcome.retry(error, retry_after)
    return DeliveryOutcome.failed(error)


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            return str(value)
    return None
