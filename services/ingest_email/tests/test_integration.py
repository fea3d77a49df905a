"""The whole service over real sockets: smtplib and HTTP in, a real broker's ``inbound.v1`` out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.policy
import hashlib
import hmac
import json
import os
import smtplib
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from switchboard.common.events import InboundMessage, encode
from switchboard.common.runtime import KAFKA, TOPICS, running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume, consume_records
from switchboard.ingest_email.app import INGEST_EMAIL, build_app
from switchboard.ingest_email.settings import IngestEmailSettings

CORPUS = Path(__file__).parent / "corpus"
POSTMARK = "pm-user:pm-secret"
MAILGUN_KEY = "mg-signing-key"
SENDGRID_SECRET = "sg-path-secret"


def make_settings(kafka: KafkaSettings, prefix: str, blob_dir: Path) -> IngestEmailSettings:
    return IngestEmailSettings(
        kafka=kafka,
        topic_prefix=prefix,
        smtp_host="127.0.0.1",
        smtp_port=0,
        recipients={"support@acme.example": {"tenant": "acme", "inbox": "support"}, "@globex.example": "globex"},
        postmark_basic_auth={"acme": POSTMARK},
        mailgun_signing_keys={"acme": MAILGUN_KEY},
        sendgrid_secrets={"globex": SENDGRID_SECRET},
        blob_dir=blob_dir,
        shutdown_grace_seconds=5,
    )


@pytest.fixture
async def service(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[web.Application, str]]:
    app = build_app(make_settings(kafka_settings, topic_prefix, tmp_path / "blobs"))
    async with running_app(app) as url:
        async with asyncio.timeout(30):
            await app[KAFKA].connected.wait()
        yield app, url


def smtp_send(port: int, rcpts: list[str], raw: bytes) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        return dict(client.sendmail("sender@customer.example", rcpts, raw))


async def read_inbound(bootstrap: str, topic: str, count: int) -> list[InboundMessage]:
    records = await consume_records(bootstrap, topic, count=count, timeout=30)
    out = [r for r in records if isinstance(r, InboundMessage)]
    assert len(out) == count
    return out


@pytest.mark.broker
async def test_smtp_and_webhook_land_on_inbound(service: tuple[web.Application, str], kafka_bootstrap: str) -> None:
    app, url = service
    smtp = app[INGEST_EMAIL].smtp
    assert smtp is not None
    # one message for one tenant, one message for two tenants
    reply = (CORPUS / "gmail_reply.eml").read_bytes()
    assert await asyncio.to_thread(smtp_send, smtp.port, ["support+t0k3n42@acme.example"], reply) == {}
    fwd = (CORPUS / "attachments_rfc2231.eml").read_bytes()
    rcpts = ["support@acme.example", "help@globex.example"]
    assert await asyncio.to_thread(smtp_send, smtp.port, rcpts, fwd) == {}
    # and one through Postmark's webhook
    payload = {
        "FromFull": {"Email": "kim@example.org", "Name": "Kim"},
        "OriginalRecipient": "support@acme.example",
        "Subject": "Webhook",
        "MessageID": "pm-int-1",
        "TextBody": "via postmark",
    }
    auth = {"Authorization": "Basic " + base64.b64encode(POSTMARK.encode()).decode()}
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{url}/inbound/postmark/acme", json=payload, headers=auth)
        assert resp.status == 200
        metrics = await (await http.get(f"{url}/metrics")).text()
    assert 'switchboard_ingest_email_messages_total{outcome="published",provider="smtp"} 3.0' in metrics

    records = await read_inbound(kafka_bootstrap, app[TOPICS].inbound, 4)
    by_id: dict[tuple[str, str], InboundMessage] = {(r.tenant_id, r.provider_message_id): r for r in records}
    gmail = by_id[("acme", "CAF=def456+reply@mail.gmail.com")]
    assert gmail.reply_token == "t0k3n42"
    assert gmail.inbox == "support"
    assert gmail.text == "Thanks, the refund has not arrived yet. Can you check again?"
    fwd_id = [k for k in by_id if k[1].startswith("sha256:")]
    assert sorted(t for t, _ in fwd_id) == ["acme", "globex"]
    stored = by_id[fwd_id[0]].attachments[1]
    assert stored.filename == "請求書.pdf"
    assert stored.blob_ref is not None
    postmark = by_id[("acme", "pm-int-1")]
    assert (postmark.provider, postmark.text, postmark.contact.display_name) == ("postmark", "via postmark", "Kim")


@pytest.mark.broker
async def test_mailgun_and_sendgrid_land_on_inbound(service: tuple[web.Application, str], kafka_bootstrap: str) -> None:
    app, url = service
    ts, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(MAILGUN_KEY.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    mailgun = {
        "timestamp": ts,
        "token": token,
        "signature": signature,
        "recipient": "support@acme.example",
        "body-mime": "From: Mo <mo@example.org>\r\nMessage-ID: <mg-int@example.org>\r\n\r\nvia mailgun\r\n",
    }
    sendgrid = aiohttp.FormData(default_to_multipart=True)
    sendgrid.add_field("email", "From: Sam <sam@example.org>\r\nMessage-ID: <sg-int@example.org>\r\n\r\nvia sendgrid")
    sendgrid.add_field("envelope", json.dumps({"to": ["help@globex.example"], "from": "sam@example.org"}))
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{url}/inbound/mailgun/acme", data=mailgun)
        assert resp.status == 200
        replay = await http.post(f"{url}/inbound/mailgun/acme", data=mailgun)
        assert replay.status == 403
        resp = await http.post(f"{url}/inbound/sendgrid/globex/{SENDGRID_SECRET}", data=sendgrid)
        assert resp.status == 200
        wrong = await http.post(f"{url}/inbound/sendgrid/acme/{SENDGRID_SECRET}", data={"email": "x"})
        assert wrong.status == 403
    records = await read_inbound(kafka_bootstrap, app[TOPICS].inbound, 2)
    got = {(r.tenant_id, r.provider, r.provider_message_id, r.text) for r in records}
    assert got == {
        ("acme", "mailgun", "mg-int@example.org", "via mailgun"),
        ("globex", "sendgrid", "sg-int@example.org", "via sendgrid"),
    }


@pytest.mark.broker
async def test_records_are_keyed_by_tenant(service: tuple[web.Application, str], kafka_bootstrap: str) -> None:
    app, _ = service
    smtp = app[INGEST_EMAIL].smtp
    assert smtp is not None
    raw = b"From: a@customer.example\r\nMessage-ID: <key-1@customer.example>\r\n\r\nhello\r\n"
    assert await asyncio.to_thread(smtp_send, smtp.port, ["x@globex.example"], raw) == {}
    records = await consume_records(kafka_bootstrap, app[TOPICS].inbound, count=1, timeout=30)
    (record,) = records
    assert record.tenant_id == "globex"
    assert record.key() == b"globex"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_broker_unreachable_gives_451_and_503(topic_prefix: str, tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{closed_port()}", request_timeout_ms=1000)
    app = build_app(make_settings(kafka, topic_prefix, tmp_path))
    async with running_app(app) as url:
        smtp = app[INGEST_EMAIL].smtp
        assert smtp is not None
        raw = b"From: a@customer.example\r\n\r\nhello\r\n"
        with pytest.raises(smtplib.SMTPDataError) as info:
            await asyncio.to_thread(smtp_send, smtp.port, ["support@acme.example"], raw)
        assert info.value.smtp_code == 451
        auth = {"Authorization": "Basic " + base64.b64encode(POSTMARK.encode()).decode()}
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{url}/inbound/postmark/acme", json={"TextBody": "x"}, headers=auth)
            assert resp.status == 503
            assert (await resp.json())["error"] == "broker_unavailable"
            ready = await http.get(f"{url}/readyz")
            assert ready.status == 503


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.broker
async def test_killed_mid_run_every_250_is_on_the_broker(kafka_bootstrap: str, topic_prefix: str) -> None:
    smtp_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SWITCHBOARD_KAFKA_PARTITIONS": "3",
        "SWITCHBOARD_TOPIC_PREFIX": topic_prefix,
        "SWITCHBOARD_HTTP_HOST": "127.0.0.1",
        "SWITCHBOARD_HTTP_PORT": str(http_port),
        "SWITCHBOARD_SMTP_HOST": "127.0.0.1",
        "SWITCHBOARD_SMTP_PORT": str(smtp_port),
        "SWITCHBOARD_RECIPIENTS": json.dumps({"support@acme.example": "acme"}),
        "SWITCHBOARD_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.ingest_email",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        if (await http.get(f"http://127.0.0.1:{http_port}/readyz")).status == 200:
                            break
                    await asyncio.sleep(0.1)

        accepted: list[str] = []
        lock = threading.Lock()
        enough = threading.Event()

        def client(worker: int) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as conn:
                    for i in range(75):
                        mid = f"kill-{worker}-{i}@customer.example"
                        raw = f"From: a@customer.example\r\nMessage-ID: <{mid}>\r\n\r\nmessage {i}\r\n".encode()
                        conn.sendmail("a@customer.example", ["support@acme.example"], raw)
                        with lock:
                            accepted.append(mid)
                            if len(accepted) >= 100:
                                enough.set()
            except (OSError, smtplib.SMTPException):
                return  # the service was killed under us: this message got no 250

        workers = [asyncio.create_task(asyncio.to_thread(client, w)) for w in range(4)]
        await asyncio.to_thread(enough.wait, 30)
        proc.kill()  # SIGKILL: no graceful drain, no flush
        await asyncio.gather(*workers)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert 100 <= len(accepted) < 300  # killed mid-run
    wanted = set(accepted)

    def ids(raw: list[Any]) -> set[str]:
        return {json.loads(r.value)["provider_message_id"] for r in raw}

    # fails (times out) unless every message that got a 250 is on the topic
    raw = await consume(kafka_bootstrap, f"{topic_prefix}inbound.v1", count=len(wanted), timeout=30,
                        until=lambda got: wanted <= ids(got))  # fmt: skip
    assert wanted <= ids(raw)


def long_cjk_message() -> bytes:
    """A 3.6 MB message in a three-byte script: within every body cap by characters, a 2 MB
    record before the bodies were fitted to the record size."""
    message = EmailMessage()
    message["From"] = "Ann <ann@customer.example>"
    message["To"] = "support@acme.example"
    message["Subject"] = "長いお問い合わせ"
    message["Message-ID"] = "<long-cjk-1@customer.example>"
    message.set_content(("注文した商品がまだ届きません。" * 5 + "\n") * 3500)
    message.add_alternative(
        "<html><body>" + ('<p class="q" style="margin:0">' + "注文した商品がまだ届きません。" * 4 + "</p>\n") * 9000,
        subtype="html",
    )
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire


@pytest.mark.broker
async def test_a_message_whose_bodies_encode_past_the_broker_limit_is_accepted_shortened(
    service: tuple[web.Application, str], kafka_bootstrap: str
) -> None:
    app, _ = service
    smtp = app[INGEST_EMAIL].smtp
    assert smtp is not None
    raw = long_cjk_message()
    assert len(raw) > 3 * 1024**2
    assert await asyncio.to_thread(smtp_send, smtp.port, ["support@acme.example"], raw) == {}  # 250, not 451
    (record,) = await read_inbound(kafka_bootstrap, app[TOPICS].inbound, 1)
    assert len(encode(record)) <= app[INGEST_EMAIL].settings.max_record_bytes
    assert "html-truncated-to-fit-record" in record.parser_defects
    assert record.text.startswith("注文した商品がまだ届きません。")
