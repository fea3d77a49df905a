"""Microsoft Teams: an Adaptive Card posted to a Teams Workflows webhook URL.

Teams refuses messages above about 28 KB; the card is kept under :data:`MAX_CARD_BYTES`
by shortening the preview (the only unbounded part). Workflows webhooks cannot call back,
so the card offers an "Open" link rather than Accept/Decline buttons.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import orjson

from switchboard.common.events import DeliveryEndpoint, Dispatch, EndpointKind
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.render import clean_multiline, facts, headline, truncate
from switchboard.notifier.sink import BaseSink
from switchboard.notifier.sinks.http import JSON_CONTENT, post_json
from switchboard.notifier.urlguard import UrlChecker, UrlPolicy

MAX_CARD_BYTES = 27_000
"""Safely under Teams' ~28 KB message limit, leaving room for the envelope Teams adds."""


def build_card(dispatch: Dispatch, preview: str | None = None) -> dict[str, Any]:
    conv = dispatch.conversation
    text = clean_multiline(conv.preview if preview is None else preview)
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": headline(dispatch), "weight": "Bolder", "size": "Medium", "wrap": True},
        {"type": "FactSet", "facts": [{"title": f.label, "value": f.value} for f in facts(dispatch)]},
    ]
    if text:
        body.append({"type": "TextBlock", "text": text, "wrap": True, "isSubtle": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if conv.link and conv.link.startswith(("https://", "http://")):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open conversation", "url": conv.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def encode_card(dispatch: Dispatch, max_bytes: int = MAX_CARD_BYTES) -> bytes:
    """The card as JSON, under ``max_bytes``: the preview is shortened as far as needed."""
    body = orjson.dumps(build_card(dispatch))
    if len(body) <= max_bytes:
        return body
    preview = clean_multiline(dispatch.conversation.preview)
    lo, hi = 0, len(preview)
    best = orjson.dumps(build_card(dispatch, ""))
    while lo <= hi:  # the longest preview prefix that fits
        mid = (lo + hi) // 2
        candidate = orjson.dumps(build_card(dispatch, truncate(preview, mid)))
        if len(candidate) <= max_bytes:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    if len(best) > max_bytes:
        raise ValueError("card does not fit the Teams size limit even without a preview")
    return best


class TeamsSink(BaseSink):
    """The endpoint target is the Workflows webhook URL (checked against the URL policy)."""

    kind: ClassVar[EndpointKind] = EndpointKind.TEAMS

    def __init__(self, session: aiohttp.ClientSession, policy: UrlPolicy, *, timeout: float = 10.0) -> None:
        self._session = session
        self._guard = UrlChecker(policy)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        try:
            body = encode_card(dispatch)
        except ValueError as exc:
            return DeliveryOutcome.failed(str(exc))
        return await post_json(
            self._session,
            self._guard,
            endpoint.target,
            body,
            {"Content-Type": JSON_CONTENT, "Idempotency-Key": dispatch.dispatch_id},
            what="teams",
            timeout=self._timeout,
        )
