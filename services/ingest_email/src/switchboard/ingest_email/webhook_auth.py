"""Authentication of provider webhooks: pure code, clock injected."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["AuthError", "MailgunVerifier", "ReplayCache", "check_basic_auth", "check_secret"]


@dataclass(frozen=True)
class AuthError(Exception):
    """Refused: ``status`` is 401 (no credentials) or 403 (wrong, stale or replayed)."""

    status: int
    code: str
    detail: str


class ReplayCache:
    """Remembers recently used tokens, bounded in count and in age."""

    def __init__(self, *, max_entries: int = 50_000, ttl_seconds: float = 600.0) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, token: str, now: float) -> bool:
        self._expire(now)
        return token in self._seen

    def add(self, token: str, now: float) -> None:
        self._expire(now)
        self._seen[token] = now
        self._seen.move_to_end(token)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._seen:
            token, at = next(iter(self._seen.items()))
            if now - at <= self._ttl:
                break
            del self._seen[token]


class MailgunVerifier:
    """Mailgun's webhook signature: HMAC-SHA256 of ``timestamp + token`` with the signing key.

    A token is refused when seen before; it is remembered only once the message it carried
    was accepted (:meth:`accept`), so a provider retry after a 503 is not mistaken for a replay.
    """

    def __init__(
        self,
        signing_keys: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
        tolerance_seconds: float = 300.0,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self._keys = dict(signing_keys)
        self._clock = clock
        self._tolerance = tolerance_seconds
        self._cache = replay_cache or ReplayCache(ttl_seconds=2 * tolerance_seconds)

    def verify(self, tenant_id: str, timestamp: str | None, token: str | None, signature: str | None) -> None:
        if not (timestamp and token and signature):
            raise AuthError(401, "missing_signature", "timestamp, token and signature are required")
        key = self._keys.get(tenant_id)
        if key is None:
            raise AuthError(403, "invalid_signature", "signature does not verify")
        expected = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise AuthError(403, "invalid_signature", "signature does not verify")
        try:
            ts = float(timestamp)
        except ValueError:
            raise AuthError(403, "invalid_timestamp", "timestamp is not a number") from None
        now = self._clock()
        if abs(now - ts) > self._tolerance:
            raise AuthError(403, "stale_timestamp", f"timestamp is more than {self._tolerance:.0f}s away")
        if self._cache.seen(f"{tenant_id}:{token}", now):
            raise AuthError(403, "replayed_token", "this token was already used")

    def accept(self, tenant_id: str, token: str) -> None:
        self._cache.add(f"{tenant_id}:{token}", self._clock())


def check_secret(expected: str | None, given: str | None) -> None:
    """A shared secret (in the URL path or a header)."""
    if not given:
        raise AuthError(401, "missing_credentials", "credentials are required")
    if expected is None or not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthError(403, "invalid_credentials", "credentials are not valid")


def check_basic_auth(expected: str | None, authorization: str | None, *, password_only: bool = False) -> None:
    """HTTP basic auth against ``user:password`` (or just the password when ``password_only``)."""
    if not authorization or not authorization.lower().startswith("basic "):
        raise AuthError(401, "missing_credentials", "basic authentication is required")
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError(401, "malformed_credentials", "basic authentication header is malformed") from None
    given = decoded.partition(":")[2] if password_only else decoded
    check_secret(expected, given or None)
