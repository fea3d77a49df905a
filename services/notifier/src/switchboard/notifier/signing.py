"""Standard Webhooks signatures (https://www.standardwebhooks.com), several secrets during rotation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret, read as the reference library reads it."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")  # tolerates unpadded base64
    if not key:
        raise ValueError("empty secret")
    return key


def _mac(keyed: hmac.HMAC, prefix: bytes, body: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(prefix)
    mac.update(body)
    return mac.digest()


class WebhookSigner:
    """Signs ``{id}.{timestamp}.{body}`` with HMAC-SHA256 under every configured secret.

    Secrets are in the Standard Webhooks form (``whsec_`` + base64). During a rotation list
    the new and the old secret: the ``webhook-signature`` header then carries one
    ``v1,<signature>`` per secret, separated by spaces, and a receiver holding either accepts.

    The signature is the scheme's HMAC over ``{id}.{timestamp}.`` and the body bytes as sent,
    fed to a copy of a keyed HMAC per secret; the tests check it against the reference
    implementation (``standardwebhooks``), which also verifies it.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("a webhook signer needs at least one secret")
        try:
            # One keyed HMAC per secret, copied per message: no key set-up or digest look-up per send.
            self._macs = tuple(hmac.new(decode_secret(s), digestmod=hashlib.sha256) for s in secrets)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"invalid webhook secret ({type(exc).__name__}); expected whsec_<base64>") from None

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        prefix = b"%s.%d." % (msg_id.encode(), timestamp)  # the signed content is prefix + body
        return " ".join(f"v1,{base64.b64encode(_mac(keyed, prefix, body)).decode()}" for keyed in self._macs)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }
