"""The SMTP listener over real sockets (smtplib as the client), with a fake publisher."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard.common.events import InboundMessage
from switchboard.ingest_email.ingest import EmailIngestor
from switchboard.ingest_email.publish import PublishError
from switchboard.ingest_email.routing import RecipientMap, Route
from switchboard.ingest_email.smtp import EmailSMTPHandler, SMTPListener, SMTPOptions, tls_context_from_files

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakePublisher:
    def __init__(self) -> None:
        self.records: list[InboundMessage] = []
        self.fail = False

    async def publish(self, record: InboundMessage, encoded: bytes) -> None:
        if self.fail:
            raise PublishError("broker down")
        self.records.append(record)


RECIPIENTS = RecipientMap(
    {
        "support@acme.example": Route("acme", inbox="support"),
        "@billing.acme.example": Route("acme", inbox="billing"),
        "help@globex.example": Route("globex"),
    }
)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


async def start(publisher: FakePublisher, **options: object) -> SMTPListener:
    ingestor = EmailIngestor(publisher, clock=lambda: NOW)
    opts = SMTPOptions(host="127.0.0.1", port=0, hostname="mx.test", **options)  # type: ignore[arg-type]
    listener = SMTPListener(EmailSMTPHandler(RECIPIENTS, ingestor), opts)
    await listener.start()
    return listener


@pytest.fixture
async def listener(publisher: FakePublisher) -> AsyncIterator[SMTPListener]:
    server = await start(publisher)
    yield server
    await server.stop()


def send(port: int, rcpts: list[str], raw: bytes, *, starttls: ssl.SSLContext | None = None) -> dict[str, object]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        if starttls is not None:
            client.starttls(context=starttls)
            client.ehlo("client.test")
        return dict(client.sendmail("sender@customer.example", rcpts, raw))


async def test_accepts_and_publishes_with_route(listener: SMTPListener, publisher: FakePublisher) -> None:
    raw = (CORPUS / "gmail_reply.eml").read_bytes()
    refused = await asyncio.to_thread(send, listener.port, ["support+t0k3n42@acme.example"], raw)
    assert refused == {}
    (record,) = publisher.records
    assert record.tenant_id == "acme"
    assert record.inbox == "support"
    assert record.provider == "smtp"
    assert record.reply_token == "t0k3n42"
    assert record.recipient == "support@acme.example"
    assert record.received_at == NOW
    assert record.text == "Thanks, the refund has not arrived yet. Can you check again?"


async def test_unknown_recipient_550(listener: SMTPListener, publisher: FakePublisher) -> None:
    raw = b"From: a@customer.example\r\nSubject: x\r\n\r\nhello\r\n"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(send, listener.port, ["nobody@elsewhere.example"], raw)
    ((code, _),) = info.value.recipients.values()
    assert code == 550
    assert publisher.records == []


async def test_partly_unknown_recipients_publish_for_known_ones(
    listener: SMTPListener, publisher: FakePublisher
) -> None:
    raw = b"From: a@customer.example\r\nSubject: x\r\n\r\nhello\r\n"
    refused = await asyncio.to_thread(send, listener.port, ["nobody@elsewhere.example", "help@globex.example"], raw)
    assert list(refused) == ["nobody@elsewhere.example"]
    assert [r.tenant_id for r in publisher.records] == ["globex"]


async def test_malformed_recipient_553(listener: SMTPListener) -> None:
    def run() -> int:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
            client.ehlo("client.test")
            client.mail("a@customer.example")
            code, _ = client.rcpt("no-at-sign")
            return code

    assert await asyncio.to_thread(run) == 553


async def test_one_publish_per_tenant(listener: SMTPListener, publisher: FakePublisher) -> None:
    raw = b"From: a@customer.example\r\nMessage-ID: <multi@customer.example>\r\n\r\nhello\r\n"
    rcpts = ["support@acme.example", "anyone@billing.acme.example", "help@globex.example"]
    refused = await asyncio.to_thread(send, listener.port, rcpts, raw)
    assert refused == {}
    by_tenant = {r.tenant_id: r for r in publisher.records}
    assert len(publisher.records) == 2
    assert set(by_tenant) == {"acme", "globex"}
    assert by_tenant["acme"].provider_message_id == by_tenant["globex"].provider_message_id == "multi@customer.example"


async def test_broker_down_451(listener: SMTPListener, publisher: FakePublisher) -> None:
    publisher.fail = True
    raw = b"From: a@customer.example\r\n\r\nhello\r\n"
    with pytest.raises(smtplib.SMTPDataError) as info:
        await asyncio.to_thread(send, listener.port, ["support@acme.example"], raw)
    assert info.value.smtp_code == 451


async def test_size_advertised_and_oversize_552(publisher: FakePublisher) -> None:
    server = await start(publisher, max_message_bytes=2000)
    try:

        def run() -> tuple[str, int]:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                client.ehlo("client.test")
                size = client.esmtp_features["size"]
                try:
                    client.sendmail("a@customer.example", ["support@acme.example"], b"x" * 5000)
                except smtplib.SMTPResponseException as exc:
                    return size, exc.smtp_code
                return size, 250

        size, code = await asyncio.to_thread(run)
    finally:
        await server.stop()
    assert size == "2000"
    assert code == 552
    assert publisher.records == []


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_starttls_when_certificate_configured(publisher: FakePublisher, cert_files: tuple[Path, Path]) -> None:
    server = await start(publisher, tls_context=tls_context_from_files(*cert_files), require_starttls=True)
    client_ctx = ssl.create_default_context(cafile=str(cert_files[0]))
    client_ctx.check_hostname = False
    raw = b"From: a@customer.example\r\n\r\nover tls\r\n"
    try:

        def plain_refused() -> int:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                client.ehlo("client.test")
                assert client.has_extn("starttls")
                code, _ = client.mail("a@customer.example")
                return code

        assert await asyncio.to_thread(plain_refused) == 530  # STARTTLS required first
        assert await asyncio.to_thread(send, server.port, ["support@acme.example"], raw, starttls=client_ctx) == {}
    finally:
        await server.stop()
    assert [r.text for r in publisher.records] == ["over tls"]


def test_recipient_map_rules() -> None:
    assert RECIPIENTS.resolve("Support@ACME.example") == Route("acme", "support")
    assert RECIPIENTS.resolve("<support+tok@acme.example>") == Route("acme", "support")
    assert RECIPIENTS.resolve("x@billing.acme.example") == Route("acme", "billing")
    assert RECIPIENTS.resolve("x@acme.example") is None
    with pytest.raises(ValueError, match="invalid tenant"):
        RecipientMap({"a@b.example": Route("Bad Tenant")})


async def test_stop_drains_a_message_in_flight() -> None:
    class GatedPublisher(FakePublisher):
        def __init__(self) -> None:
            super().__init__()
            self.entered = asyncio.Event()
            self.release = asyncio.Event()

        async def publish(self, record: InboundMessage, encoded: bytes) -> None:
            self.entered.set()
            await self.release.wait()
            await super().publish(record, encoded)

    publisher = GatedPublisher()
    server = await start(publisher)
    port = server.port
    raw = b"From: a@customer.example\r\n\r\nin flight\r\n"
    client = asyncio.create_task(asyncio.to_thread(send, port, ["support@acme.example"], raw))
    async with asyncio.timeout(10):
        await publisher.entered.wait()
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the publish in flight
    with pytest.raises(ConnectionRefusedError):  # but takes no new connections
        await asyncio.to_thread(send, port, ["support@acme.example"], raw)
    publisher.release.set()
    assert await client == {}  # the sender got its 250
    await stopping
    assert [r.text for r in publisher.records] == ["in flight"]
