"""fit_record: an inbound record shortened to the size a broker accepts, and what was cut named."""

from __future__ import annotations

import pytest

from switchboard.common.events import ContactHandle, ContactIdentity, InboundMessage, encode
from switchboard.ingest_email.record_size import RecordTooLarge, fit_encoded, fit_record


def record(text: str = "", html: str | None = None, quoted: str | None = None, **extra: object) -> InboundMessage:
    return InboundMessage(
        tenant_id="acme",
        channel="email",
        provider="smtp",
        provider_message_id="m-1",
        contact=ContactIdentity(handles=(ContactHandle(kind="email", value="ann@example.com"),)),
        text=text,
        html=html,
        text_quoted=quoted,
        **extra,  # type: ignore[arg-type]
    )


def test_a_record_that_fits_is_returned_as_it_is() -> None:
    small = record("hello", "<p>hello</p>")
    assert fit_record(small, 64 * 1024) is small


def test_html_goes_first_then_the_quoted_history_then_the_text() -> None:
    big = record(text="漢" * 100_000, html='<p class="x">' + "漢" * 200_000, quoted="> " + "字" * 100_000)
    assert len(encode(big)) > 1024**2
    only_html = fit_record(big, 900 * 1024)
    assert len(encode(only_html)) <= 900 * 1024
    assert only_html.text == big.text
    assert only_html.text_quoted == big.text_quoted
    assert only_html.html is not None
    assert big.html is not None
    assert big.html.startswith(only_html.html)
    assert only_html.parser_defects == ("html-truncated-to-fit-record",)
    no_html = fit_record(big, 500 * 1024)
    assert len(encode(no_html)) <= 500 * 1024
    assert no_html.html is None  # all of it went before the history was cut
    assert no_html.text == big.text
    assert big.text_quoted is not None
    assert no_html.text_quoted
    assert big.text_quoted.startswith(no_html.text_quoted)
    assert no_html.parser_defects == ("html-truncated-to-fit-record", "text-quoted-truncated-to-fit-record")
    tight = fit_record(big, 200 * 1024)
    assert len(encode(tight)) <= 200 * 1024
    assert (tight.html, tight.text_quoted) == (None, None)
    assert tight.text
    assert big.text.startswith(tight.text)
    assert tight.parser_defects[-1] == "text-truncated-to-fit-record"


def test_a_record_too_large_without_its_bodies_is_refused() -> None:
    heavy = record("hi", provider_metadata={"headers": "x" * 200_000})
    with pytest.raises(RecordTooLarge, match="without its bodies"):
        fit_record(heavy, 100 * 1024)


def test_fit_encoded_returns_the_bytes_of_the_record_it_returns() -> None:
    small = record("hello", "<p>hello</p>")
    same, encoded = fit_encoded(small, 64 * 1024)
    assert same is small
    assert encoded == encode(small)
    big = record(text="x" * 50_000, html="<p>" + "y" * 100_000)
    cut, encoded = fit_encoded(big, 80 * 1024)
    assert cut.html != big.html
    assert encoded == encode(cut)
    assert len(encoded) <= 80 * 1024
