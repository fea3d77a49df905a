"""The normalization's shortcuts give the answers of the full computations they skip."""

from __future__ import annotations

import email.utils
import itertools

import pytest

from switchboard.ingest_email.normalize import _QUOTE_HINTS, _hints, normalize_message


def hints_by_scanning_every_marker(text: str) -> tuple[int, int]:
    low = "\n" + text.lower()
    found = [i for i in (low.find(hint) for hint in _QUOTE_HINTS) if i >= 0]
    if not found:
        return -1, -1
    return max(min(found) - 1, 0), max(max(found) - 1, 0)


PROSE = "Hello, the parcel arrived today but the sizes are wrong.\nCould you send a replacement?\n"


def texts() -> list[str]:
    out = [PROSE, "", "\n", "no markers at all", PROSE * 20]
    for hint, other in itertools.product(_QUOTE_HINTS, ("", "\nWROTE:", "\n> q")):
        for variant in (hint, hint.upper(), hint.title()):
            out.append(variant + PROSE)  # at the very start (the leading newline is implied)
            out.append(PROSE + variant + " tail" + other)
            out.append(PROSE * 3 + variant.strip("\n"))  # a line marker not at a line start
    return out


def test_hint_prefilter_agrees_with_scanning_every_marker() -> None:
    cases = texts()
    assert len(cases) > 500
    disagreements = [t for t in cases if _hints(t) != hints_by_scanning_every_marker(t)]
    assert disagreements == []
    assert sum(_hints(t) == (-1, -1) for t in cases) >= 4  # both outcomes are exercised


FROM_HEADERS = [
    "Jane Doe <jane@example.org>",
    "jane@example.org",
    "<jane@example.org>",
    "J. Doe <j@example.org>",
    "O'Brien <ob@example.ie>",
    '"Doe, Jane" <jane@example.org>',
    '"jane@example.org" <mallory@evil.example>',
    "jane@example.org, mallory@evil.example",
    "Jane <jane@example.org> <mallory@evil.example>",
    "jane@example.org <mallory@evil.example>",
    "<jane@example.org>, <mallory@evil.example>",
    "friends: jane@example.org, mallory@evil.example;",
    "=?utf-8?q?Jos=C3=A9?= <jose@example.org>",
    "Jane Doe jane@example.org",
]


@pytest.mark.parametrize("from_header", FROM_HEADERS)
def test_author_is_set_exactly_when_the_header_names_one_address(from_header: str) -> None:
    raw = f"From: {from_header}\r\nTo: support@acme.example\r\nSubject: hi\r\n\r\nhello\r\n".encode()
    normalized = normalize_message(raw, tenant_id="acme", provider="smtp")
    addresses = [a for _, a in email.utils.getaddresses([from_header]) if a]
    if len(addresses) == 1 and normalized.record.contact.handles:
        assert normalized.author is not None
        assert normalized.author == normalized.record.contact.handles[0].value
    else:
        assert normalized.author is None
