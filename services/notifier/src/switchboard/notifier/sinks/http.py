"""One guarded JSON POST, shared by the HTTP sinks (webhook, Teams)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from switchboard.notifier.outcome import DeliveryOutcome, outcome_for_http_status
from switchboard.notifier.urlguard import UrlPolicy, UrlRefused


async def post_json(
    session: aiohttp.ClientSession,
    policy: UrlPolicy,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    what: str,
    timeout: float = 10.0,
) -> DeliveryOutcome:
    """POST ``body`` to ``url`` if the policy allows it; never follows redirects."""
    try:
        await policy.check(url)
    except UrlRefused as exc:
        return DeliveryOutcome.failed(f"{what} URL refused: {exc}")
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            await response.read()
            return outcome_for_http_status(response.status, response.headers.get("Retry-After"), what)
    except aiohttp.ClientConnectorDNSError as exc:
        if isinstance(exc.os_error, UrlRefused):
            return DeliveryOutcome.failed(f"{what} URL refused: {exc.os_error}")
        return DeliveryOutcome.retry(f"{what} host did not resolve")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return DeliveryOutcome.retry(f"{what} unreachable: {type(exc).__name__}")
