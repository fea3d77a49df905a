"""Webhook errors: each maps to one HTTP status and a JSON body ``{"error": code, "reason": ...}``."""

from __future__ import annotations

from typing import ClassVar

import orjson
from aiohttp import web

__all__ = [
    "BadSignature",
    "ConfigError",
    "Forbidden",
    "InvalidContactAttributes",
    "MalformedPayload",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "PublishFailed",
    "UnknownTenant",
    "UnsupportedMediaType",
    "WebhookError",
    "json_error",
]


class WebhookError(Exception):
    """A request the host answers with ``status`` and a JSON reason (never a 500)."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def response(self) -> web.Response:
        return json_error(self.status, self.code, self.reason)


class MalformedPayload(WebhookError):
    status = 400
    code = "malformed_payload"


class InvalidContactAttributes(WebhookError):
    """Contact attributes outside the adapter's bounds (a readable body whose attributes are not allowed)."""

    status = 422
    code = "invalid_contact_attributes"


class BadSignature(WebhookError):
    """Missing or wrong signature, token or key."""

    status = 401
    code = "bad_signature"


class Forbidden(WebhookError):
    """Authenticated but refused (a wrong verify token in a handshake)."""

    status = 403
    code = "forbidden"


class UnknownTenant(WebhookError):
    status = 404
    code = "unknown_tenant"


class MethodNotAllowed(WebhookError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(WebhookError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(WebhookError):
    status = 415
    code = "unsupported_media_type"


class PublishFailed(WebhookError):
    """The broker did not acknowledge the write; the provider should retry."""

    status = 503
    code = "broker_unavailable"


class ConfigError(ValueError):
    """Adapter or tenant configuration that cannot work (raised at start, not per request)."""


def json_error(status: int, code: str, reason: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": code, "reason": reason}),
        content_type="application/json",
    )
