"""Small readers shared by the built-in adapters (tolerant of missing or oddly typed fields)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (unknown shapes are ignored, never a 500)."""
    return value if isinstance(value, dict) else {}


def arr(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def from_epoch(value: Any, *, millis: bool = False) -> datetime | None:
    """A provider timestamp (seconds or milliseconds since the epoch, number or string)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if millis:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def compact(mapping: dict[str, Any]) -> dict[str, JsonValue]:
    """Metadata without the ``None`` values."""
    return {k: v for k, v in mapping.items() if v is not None}
