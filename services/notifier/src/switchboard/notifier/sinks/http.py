"""One guarded JSON POST, shared by the HTTP sinks (webhook, Teams)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from switchboard.notifier.outcome import DeliveryOutcome, outcome_for_http_status
from switchboard.notifier.urlguard import UrlChecker, UrlRefused

JSON_CONTENT = "application/json"


async def post_json(
    session: aiohttp.ClientSession,
    guard: UrlChecker,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    what: str,
    timeout: aiohttp.ClientTimeout,
) -> DeliveryOutcome:
    """POST ``body`` to ``url`` if the guard allows it; never follows redirects.

    ``headers`` should carry ``Content-Type`` (the caller builds the dict once per send).
    """
    try:
        await guard.check(url)
    except UrlRefused as exc:
        return DeliveryOutcome.failed(f"{what} URL refused: {exc}")
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False, timeout=timeout) as response:
            await response.read()
            return outcome_for_http_status(response.status, response.headers.get("Retry-After"), what)
    except aiohttp.ClientConnectorDNSError as exc:
        if isinstance(exc.os_error, UrlRefused):
            return DeliveryOutcome.failed(f"{what} URL refused: {exc.os_error}")
        return DeliveryOutcome.retry(f"{what} host did not resolve")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return DeliveryOutcome.retry(f"{what} unreachable: {type(exc).__name__}")
