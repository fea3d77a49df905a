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
from switchboard.notifier.sinks.http import JSON_CONTENT, post_json
from switchboard.notifier.urlguard import UrlChecker, UrlPolicy


def webhook_body(dispatch: Dispatch, timestamp: int) -> bytes:
    """``{"type": "dispatch.<kind>", "timestamp": ..., "data": <dispatch record>}``.

    The dispatch is written by pydantic's JSON serializer straight to JSON text and set into
    the envelope as it is: the same bytes as ``orjson.dumps`` of the envelope with
    ``model_dump(mode="json")`` as its data, without building the intermediate dicts (a
    test holds the two equal).
    """
    data = dispatch.model_dump_json(by_alias=True).encode()
    kind = orjson.dumps(f"dispatch.{dispatch.kind.value}")
    return b'{"type":%s,"timestamp":%d,"data":%s}' % (kind, timestamp, data)


class WebhookSink(BaseSink):
    """The endpoint target is the URL; ``webhook-id`` (and ``Idempotency-Key``) is the dispatch id.

    Each attempt is signed afresh (a retry carries its own ``webhook-timestamp``, as the
    scheme wants, so a late retry is not refused as stale); the ``webhook-id`` stays the
    dispatch id across retries.
    """

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
        self._guard = UrlChecker(policy)
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def target_key(self, endpoint: DeliveryEndpoint) -> str:
        return f"webhook:{endpoint.target}"

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        timestamp = int(self._clock())
        body = webhook_body(dispatch, timestamp)
        headers = self._signer.headers(dispatch.dispatch_id, timestamp, body)
        headers["Idempotency-Key"] = dispatch.dispatch_id
        headers["Content-Type"] = JSON_CONTENT
        return await post_json(
            self._session, self._guard, endpoint.target, body, headers, what="webhook", timeout=self._timeout
        )
