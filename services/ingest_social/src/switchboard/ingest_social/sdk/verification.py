"""Signature helpers: HMAC over the raw body, compared in constant time.

Every helper takes bytes exactly as received; nothing here parses JSON. Comparisons go
through :func:`hmac.compare_digest`, so the time taken does not reveal how much of a
signature matched.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from switchboard.ingest_social.sdk.errors import BadSignature

__all__ = [
    "constant_time_equals",
    "hmac_sha256",
    "sign_standard_webhook",
    "twilio_signature",
    "verify_prefixed_signature",
    "verify_standard_webhook",
    "verify_token",
]


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    return hmac.compare_digest(_b(a), _b(b))


@functools.lru_cache(maxsize=1024)
def _keyed_sha256(secret: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with ``secret``, to be copied for each message."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def hmac_sha256(secret: str | bytes, message: bytes) -> bytes:
    # A copy of a keyed HMAC skips the key schedule (and OpenSSL's lookup of the digest by
    # name) that a one-shot ``hmac.digest`` does on every call.
    mac = _keyed_sha256(_b(secret)).copy()
    mac.update(message)
    return mac.digest()


def verify_token(presented: str | None, expected: str, *, what: str = "token") -> None:
    """A shared secret sent as is (a header token, a site key)."""
    if not presented:
        raise BadSignature(f"missing {what}")
    if not constant_time_equals(presented, expected):
        raise BadSignature(f"wrong {what}")


def verify_prefixed_signature(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    prefix: str = "sha256=",
    encoding: str = "hex",
    header_name: str = "signature",
) -> None:
    """``<prefix><hex or base64 of HMAC-SHA256(secret, body)>`` (Meta, X). Any of ``secrets`` may match."""
    if not header:
        raise BadSignature(f"missing {header_name}")
    if not header.startswith(prefix):
        raise BadSignature(f"{header_name} does not start with {prefix!r}")
    presented = header[len(prefix) :].strip()
    for secret in secrets:
        digest = hmac_sha256(secret, body)
        expected = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
        if constant_time_equals(presented.lower() if encoding == "hex" else presented, expected):
            return
    raise BadSignature(f"{header_name} does not match the body")


# --------------------------------------------------------------------------- Standard Webhooks

STANDARD_WEBHOOK_TOLERANCE_SECONDS = 300


def _standard_key(secret: str) -> bytes:
    """A Standard Webhooks secret is ``whsec_<base64>``; a bare string is used as raw bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value ``v1,<base64>`` for one secret."""
    mac = hmac_sha256(_standard_key(secret), f"{msg_id}.{timestamp}.".encode() + body)
    return "v1," + base64.b64encode(mac).decode()


def verify_standard_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: datetime,
    tolerance_seconds: int = STANDARD_WEBHOOK_TOLERANCE_SECONDS,
) -> str:
    """Check ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``; returns the webhook id.

    The signature header may hold several space-separated ``v1,<sig>`` entries, and several
    secrets may be configured (rotation): any entry matching any secret passes.
    """
    msg_id = headers.get("webhook-id")
    ts_raw = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not msg_id or not ts_raw or not sig_header:
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts_raw)
    except ValueError:
        raise BadSignature("webhook-timestamp is not an integer") from None
    skew = now.timestamp() - timestamp
    if abs(skew) > tolerance_seconds:
        raise BadSignature(f"webhook-timestamp outside the {tolerance_seconds} s tolerance")
    presented = [part for part in sig_header.split() if part.startswith("v1,")]
    for secret in secrets:
        expected = sign_standard_webhook(secret, msg_id, timestamp, body)
        if any(constant_time_equals(p, expected) for p in presented):
            return msg_id
    raise BadSignature("webhook-signature does not match")


# --------------------------------------------------------------------------- Twilio


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Base64 HMAC-SHA1 of the full URL followed by each POST parameter name and value, sorted.

    As Twilio computes it: sorted by name, a repeated name's values sorted, identical pairs once.
    """
    data = url + "".join(k + v for k, v in sorted(set(params)))
    return base64.b64encode(hmac.digest(auth_token.encode(), data.encode(), "sha1")).decode()
