"""Forwards an agent's action to the router API (``POST /v1/tenants/{t}/conversations/{c}/{action}``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

CONVERSATION_ACTIONS = frozenset({"accept", "decline", "resolve"})


class RouterUnreachable(Exception):
    """The router did not answer (refused, reset, timed out)."""


@dataclass(frozen=True, slots=True)
class RouterAnswer:
    status: int
    body: bytes
    content_type: str


def router_base(url: str) -> URL:
    """The router's base URL; raises ``ValueError`` unless it is an absolute http(s) URL."""
    base = URL(url)
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError("the router URL must be an absolute http(s) URL")
    return base


class RouterClient:
    """A small client of the router API over one aiohttp session (an async context manager)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._base = router_base(base_url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RouterClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def conversation_url(self, tenant: str, conversation_id: str, action: str) -> URL:
        if action not in CONVERSATION_ACTIONS:
            raise ValueError(f"unknown conversation action {action!r}")
        segments = ("v1", "tenants", tenant, "conversations", conversation_id, action)
        return self._base.joinpath(*(quote(s, safe="") for s in segments), encoded=True)

    async def conversation_action(
        self, tenant: str, conversation_id: str, action: str, body: dict[str, Any]
    ) -> RouterAnswer:
        if self._session is None:
            raise RouterUnreachable("the router client is not started")
        url = self.conversation_url(tenant, conversation_id, action)
        try:
            async with self._session.post(
                url,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                allow_redirects=False,
            ) as response:
                return RouterAnswer(response.status, await response.read(), response.content_type)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RouterUnreachable(type(exc).__name__) from exc
