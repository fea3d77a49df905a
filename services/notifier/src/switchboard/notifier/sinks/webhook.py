"""Signed webhooks: a JSON POST signed the Standard Webhooks way, the dispatch id as its id."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import aiohttp
import orjson

from switchboard.common.events import DeliveryEndpoint, Dispatch, EndpointKind
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.signing import WebhookSigner
from switchboard.notifier.sink import BaseSink
from switchboard.notifier.sinks.http import post_json
from switchboard.notifier.urlguard import UrlPolicy


def webhook_body(dispatch: Dispatch, timestamp: int) -> bytes:
    """``{"type": "dispatch.<kind>", "timestamp": ..., "data": <dispatch record>}``."""
    return orjson.dumps(
        {
            "type": f"dispatch.{dispatch.kind.value}",
            "timestamp": timestamp,
            "data": dispatch.model_dump(mode="json", by_alias=True),
        }
    )


class WebhookSink(BaseSink):
    """The endpoint target is the URL; ``webhook-id`` (and ``Idempotency-Key``) is the dispatch id."""

    kind: ClassVar[EndpointKind] = EndpointKind.WEBHOOK

    def __init__(
        self,
        session: aiohttp.ClientSession,
        signer: WebhookSigner,
        policy: UrlPolicy,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._signer = signer
        self._policy = policy
        self._clock = clock
        self._timeout = timeout

    def target_key(self, endpoint: DeliveryEndpoint) -> str:
        return f"webhook:{endpoint.target}"

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        timestamp = int(self._clock())
        body = webhook_body(dispatch, timestamp)
        headers = self._signer.headers(dispatch.dispatch_id, timestamp, body)
        headers["Idempotency-Key"] = dispatch.dispatch_id
        return await post_json(
            self._session, self._policy, endpoint.target, body, headers, what="webhook", timeout=self._timeout
        )
