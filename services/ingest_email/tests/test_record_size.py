"""fit_record: an inbound record shortened to the size a broker accepts, and what was cut named."""

from __future__ import annotations

import pytest

from switchboard.common.events import ContactHandle, ContactIdentity, InboundMessage, encode
from switchboard.common.kafka import BrokerUnavailable
from switchboard.common.kafka import RecordTooLarge as ProducerRecordTooLarge
from switchboard.common.metrics import new_registry
from switchboard.ingest_email.ingest import EmailIngestor, IngestMetrics
from switchboard.ingest_email.publish import ProducerPublisher, PublishError
from switchboard.ingest_email.record_size import RecordTooLarge, fit_encoded, fit_record
from switchboard.ingest_email.routing import Route


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


class RefusingProducer:
    """A stand-in for RecordProducer.send_raw that refuses every write with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("refusal", "expected", "outcome"),
    [
        (ProducerRecordTooLarge("the broker's limit is lower"), RecordTooLarge, "too_large"),
        (BrokerUnavailable("not acknowledged"), PublishError, "broker_unavailable"),
    ],
    ids=["too-large", "broker-down"],
)
async def test_a_broker_refusing_the_size_is_a_permanent_too_large_not_a_retry(
    refusal: Exception, expected: type[Exception], outcome: str
) -> None:
    """A broker whose limit is below SWITCHBOARD_MAX_RECORD_BYTES: SMTP 552 / webhook 413, not 451 / 503."""
    registry = new_registry()
    publisher = ProducerPublisher(RefusingProducer(refusal), "inbound.v1")  # type: ignore[arg-type]
    ingestor = EmailIngestor(publisher, metrics=IngestMetrics(registry))
    mime = b"From: c@customer.example\r\nMessage-ID: <m1@customer.example>\r\n\r\nhello\r\n"
    with pytest.raises(expected):
        await ingestor.ingest(mime, route=Route("acme"), provider="smtp")
    counted = registry.get_sample_value(
        "switchboard_ingest_email_messages_total", {"provider": "smtp", "outcome": outcome}
    )
    assert counted == 1
