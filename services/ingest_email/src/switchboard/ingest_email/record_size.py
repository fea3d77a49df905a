"""Keep an inbound record under the size a broker accepts.

The body caps (``max_text_chars``, ``max_html_chars``) count characters; a record carries
the text, the quoted history and the HTML together, JSON-escaped, so a long message in a
script of three UTF-8 bytes per character, or HTML thick with quotes, encodes to two or
three times its characters. A record over the producer's ``max_request_size`` or the
broker's ``message.max.bytes`` (1 MiB each by default) is refused every time it is sent:
the SMTP client would be told 451 and retry for days, a provider's webhook 503 until it
gives up. :func:`fit_record` shortens the HTML, then the quoted history, then the text
until the record fits, and names what it cut in ``parser_defects``. With a blob store,
the whole bodies are kept there regardless. A record that does not fit even with its
bodies cut raises the producer's :class:`RecordTooLarge`, the error a broker refusing the
record's size raises too: one refusal (SMTP 552, webhook 413) for both.
"""

from __future__ import annotations

import math

import orjson

from switchboard.common.events import InboundMessage, encode
from switchboard.common.kafka import RecordTooLarge

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "RecordTooLarge", "fit_encoded", "fit_record"]

DEFAULT_MAX_RECORD_BYTES = 900 * 1024
"""Under the 1 MiB default of a broker's ``message.max.bytes``, with room for the batch's own bytes."""

_SHRINKABLE = ("html", "text_quoted", "text")


def fit_record(record: InboundMessage, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> InboundMessage:
    """``record``, or a copy with its bodies shortened so that it encodes to ``max_bytes`` at most."""
    return fit_encoded(record, max_bytes)[0]


def fit_encoded(record: InboundMessage, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> tuple[InboundMessage, bytes]:
    """:func:`fit_record`'s record and its encoded bytes (``encode(record)``), so that the
    publish sends the bytes measured here instead of encoding the record once more."""
    encoded = encode(record)
    if len(encoded) <= max_bytes:
        return record, encoded
    size = len(encoded)
    for name in _SHRINKABLE:
        value: str | None = getattr(record, name)
        if not value or size <= max_bytes:
            continue
        defect = f"{name.replace('_', '-')}-truncated-to-fit-record"  # named first: it counts in the size too
        record = record.model_copy(update={"parser_defects": (*record.parser_defects, defect)})
        encoded = encode(record)
        size = len(encoded)
        while value and size > max_bytes:
            per_char = len(orjson.dumps(value)) / len(value)  # escapes and multi-byte characters counted
            keep = max(0, len(value) - math.ceil((size - max_bytes) / per_char) - 16)
            value = value[:keep]
            record = record.model_copy(update={name: value if value or name == "text" else None})
            encoded = encode(record)
            size = len(encoded)
    if size > max_bytes:
        raise RecordTooLarge(f"the record is {size} bytes without its bodies; at most {max_bytes} are allowed")
    return record, encoded
