"""JSON-lines logging with structlog, with personal data kept out.

:func:`configure_logging` sets up structlog once per process (called by the runtime at
start). The :class:`RedactPII` processor runs on every event: values of fields that hold
message content (``text``, ``body``, ``html``, ``subject``, ``preview``…) are replaced by
their length, and email addresses and phone numbers anywhere in a string are masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

CONTENT_KEYS = frozenset(
    {"text", "body", "html", "subject", "preview", "text_quoted", "raw", "value", "content", "message_body"}
)
IDENTITY_KEYS = frozenset(
    {"email", "address", "phone", "phone_number", "from", "to", "sender", "recipient", "recipients"}
)

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# International or national numbers: 7+ digits, optionally grouped by spaces, dots, dashes, parens.
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w.])")


def scrub(text: str) -> str:
    """Mask email addresses and phone-like numbers in free text."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    return _PHONE.sub(_phone_sub, text)


def _phone_sub(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[phone]" if digits >= 7 else match.group(0)


class RedactPII:
    """structlog processor: no message bodies, email addresses or phone numbers in logs."""

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict

    def _clean(self, key: str, value: Any) -> Any:
        lowered = key.lower()
        if lowered in CONTENT_KEYS and isinstance(value, str | bytes):
            return f"[{len(value)} chars redacted]"
        if lowered in IDENTITY_KEYS and value is not None:
            return "[redacted]"
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, Mapping):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value


def configure_logging(level: str = "info", fmt: str = "json", *, service: str | None = None) -> None:
    """Configure structlog (and the standard library's logging, routed through it) for JSON lines."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if service:
        shared.insert(0, _bind_service(service))
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            RedactPII(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library: send them through the same chain.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                RedactPII(),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    for noisy in ("aiokafka", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def _bind_service(service: str) -> Any:
    def processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
