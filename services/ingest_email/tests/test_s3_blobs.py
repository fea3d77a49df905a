"""The S3 blob store against a real S3-speaking HTTP server (moto's server mode, in-process on
a free port), through the whole service: blobs are uploaded before the record is published,
and a store that is down gets a retryable refusal with nothing published."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from moto.server import ThreadedMotoServer

from switchboard.common.events import InboundMessage
from switchboard.ingest_email.app import INGEST_EMAIL, build_app
from switchboard.ingest_email.blobs import BlobStoreError
from switchboard.ingest_email.s3_blobs import S3BlobStore, S3Options
from switchboard.ingest_email.settings import IngestEmailSettings

CORPUS = Path(__file__).parent / "corpus"
BUCKET = "switchboard-blobs"
SECRET = "sg-secret-acme"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def options(endpoint: str, **kw: object) -> S3Options:
    base: dict[str, object] = {
        "bucket": BUCKET,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": "test",
        "secret_access_key": "test",
        "addressing_style": "path",
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 2.0,
        "max_attempts": 1,
    }
    base.update(kw)
    return S3Options(**base)  # type: ignore[arg-type]


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore(options(s3_endpoint)) as s:
        assert s._client is not None
        with contextlib.suppress(s._client.exceptions.BucketAlreadyOwnedByYou):
            await s._client.create_bucket(Bucket=BUCKET)
        yield s


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_put_is_idempotent_and_reads_back(store: S3BlobStore) -> None:
    sha = "ab" * 32
    ref = await store.put("acme", sha, b"content", "text/plain")
    assert ref == f"s3://{BUCKET}/acme/ab/{sha}"
    assert await store.put("acme", sha, b"content", "text/plain") == ref
    assert await store.get(ref) == b"content"
    with pytest.raises(BlobStoreError):
        await store.put("../x", sha, b"content", "text/plain")


async def test_unreachable_store_raises_blob_store_error() -> None:
    async with S3BlobStore(options(f"http://127.0.0.1:{closed_port()}")) as s:
        with pytest.raises(BlobStoreError):
            await s.put("acme", "cd" * 32, b"x", "text/plain")


class CheckingPublisher:
    """Publishes only if every blob the record points at is already in the bucket."""

    def __init__(self, store: S3BlobStore) -> None:
        self.store = store
        self.records: list[InboundMessage] = []

    async def publish(self, record: InboundMessage, encoded: bytes) -> None:
        for att in record.attachments:
            assert att.blob_ref is not None
            content = await self.store.get(att.blob_ref)  # raises if missing
            assert len(content) == att.size
        self.records.append(record)


def settings(endpoint: str) -> IngestEmailSettings:
    return IngestEmailSettings(
        http_port=0,
        smtp_port=0,
        smtp_host="127.0.0.1",
        recipients={"support@acme.example": "acme"},
        sendgrid_secrets={"acme": SECRET},
        blob_s3_bucket=BUCKET,
        blob_s3_endpoint_url=endpoint,
        blob_s3_region="us-east-1",
        blob_s3_access_key_id="test",
        blob_s3_secret_access_key="test",
        blob_s3_addressing_style="path",
        blob_s3_timeout_seconds=2.0,
        sender_verify_dkim=False,
    )


def sendgrid_form(raw: bytes) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    for name, value in (("email", raw), (b"envelope", b'{"to": ["support@acme.example"], "from": "a@x.example"}')):
        part = writer.append(value, {"Content-Type": "text/plain"})
        part.set_content_disposition("form-data", name=name if isinstance(name, str) else name.decode())
    return writer


async def smtp_send(port: int, raw: bytes) -> tuple[int, bytes]:
    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            client.mail("a@x.example")
            client.rcpt("support@acme.example")
            code, reply = client.data(raw)
            return code, reply

    return await asyncio.to_thread(send)


async def test_attachments_are_uploaded_before_the_record_is_published(store: S3BlobStore, s3_endpoint: str) -> None:
    publisher = CheckingPublisher(store)
    app = build_app(settings(s3_endpoint), publisher=publisher)
    raw = (CORPUS / "attachments_rfc2231.eml").read_bytes()
    async with TestClient(TestServer(app)) as client:
        response = await client.post(f"/inbound/sendgrid/acme/{SECRET}", data=sendgrid_form(raw))
        assert response.status == 200, await response.text()
        listener = app[INGEST_EMAIL].smtp
        assert listener is not None
        code, _ = await smtp_send(listener.port, raw)
        assert code == 250
    assert len(publisher.records) == 2
    for record in publisher.records:
        refs = [a.blob_ref for a in record.attachments]
        assert len(refs) == 2
        assert all(r is not None and r.startswith(f"s3://{BUCKET}/acme/") for r in refs)
        pdf = record.attachments[1]
        assert pdf.blob_ref is not None
        assert (await store.get(pdf.blob_ref)).startswith(b"%PDF-1.4")


async def test_store_down_gives_503_and_451_and_publishes_nothing() -> None:
    publisher_records: list[InboundMessage] = []

    class Recording:
        async def publish(self, record: InboundMessage, encoded: bytes) -> None:
            publisher_records.append(record)

    app = build_app(settings(f"http://127.0.0.1:{closed_port()}"), publisher=Recording())
    raw = (CORPUS / "attachments_rfc2231.eml").read_bytes()
    async with TestClient(TestServer(app)) as client:
        response = await client.post(f"/inbound/sendgrid/acme/{SECRET}", data=sendgrid_form(raw))
        assert response.status == 503
        assert (await response.json())["error"] == "blob_store_unavailable"
        assert response.headers["Retry-After"]
        listener = app[INGEST_EMAIL].smtp
        assert listener is not None
        code, reply = await smtp_send(listener.port, raw)
        assert code == 451
        assert b"attachments" in reply
        # a message with no attachment needs no store and still goes through
        plain = b"From: a@x.example\r\nTo: support@acme.example\r\nSubject: hi\r\n\r\nhello\r\n"
        code, _ = await smtp_send(listener.port, plain)
        assert code == 250
    assert [r.subject for r in publisher_records] == ["hi"]
