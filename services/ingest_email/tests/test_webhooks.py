"""Provider webhooks over real HTTP (aiohttp TestServer/TestClient), with a fake publisher."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from switchboard.common.events import InboundMessage, decode, encode
from switchboard.ingest_email.ingest import EmailIngestor
from switchboard.ingest_email.publish import PublishError
from switchboard.ingest_email.routing import RecipientMap, Route
from switchboard.ingest_email.sender_auth import SenderVerifier, VerificationPolicy
from switchboard.ingest_email.webhook_auth import MailgunVerifier, ReplayCache
from switchboard.ingest_email.webhooks import WEBHOOKS, InboundWebhooks, WebhookCredentials, accepted

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW_TS = NOW.timestamp()
MAILGUN_KEY = "key-mailgun-acme"
SENDGRID_SECRET = "sg-secret-acme"
POSTMARK_AUTH = "postmark:pm-secret"


class FakePublisher:
    def __init__(self) -> None:
        self.records: list[InboundMessage] = []
        self.fail = False

    async def publish(self, record: InboundMessage, encoded: bytes) -> None:
        if self.fail:
            raise PublishError("broker down")
        assert encoded == encode(record)  # the bytes sent are the record's, encoded once upstream
        assert decode(encoded) == record
        self.records.append(record)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def build_app(publisher: FakePublisher, max_body_bytes: int = 1024 * 1024) -> web.Application:
    app = web.Application()
    InboundWebhooks(
        ingestor=EmailIngestor(publisher, clock=lambda: NOW, verifier=SenderVerifier(VerificationPolicy(dkim=False))),
        credentials=WebhookCredentials(
            mailgun_signing_keys={"acme": MAILGUN_KEY},
            sendgrid_secrets={"acme": SENDGRID_SECRET},
            postmark_basic_auth={"acme": POSTMARK_AUTH},
        ),
        mailgun=MailgunVerifier({"acme": MAILGUN_KEY}, clock=lambda: NOW_TS, replay_cache=ReplayCache()),
        recipients=RecipientMap({"support@acme.example": Route("acme", inbox="support")}),
        max_body_bytes=max_body_bytes,
    ).add_routes(app)
    return app


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(build_app(publisher))) as c:
        yield c


Client = TestClient[web.Request, web.Application]


def signed(token: str, timestamp: float = NOW_TS, key: str = MAILGUN_KEY) -> dict[str, str]:
    ts = str(int(timestamp))
    sig = hmac.new(key.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": token, "signature": sig}


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


async def error_of(resp: aiohttp.ClientResponse) -> str:
    body = await resp.json()
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return str(body["error"])


# --------------------------------------------------------------------------- Mailgun


async def test_mailgun_raw_mime_accepted(client: Client, publisher: FakePublisher) -> None:
    data = {
        **signed("tok-1"),
        "recipient": "support+t0k3n42@acme.example",
        "sender": "jane.doe@gmail.com",
        "body-mime": (CORPUS / "gmail_reply.eml").read_text(),
    }
    resp = await client.post("/inbound/mailgun/acme", data=data)
    assert resp.status == 200
    (record,) = publisher.records
    assert (await resp.json()) == {"status": "accepted", "id": record.id}
    assert record.tenant_id == "acme"
    assert record.provider == "mailgun"
    assert record.inbox == "support"
    assert record.reply_token == "t0k3n42"
    assert record.provider_message_id == "CAF=def456+reply@mail.gmail.com"


async def test_mailgun_urlencoded_utf8_mime_keeps_its_bytes(client: Client, publisher: FakePublisher) -> None:
    # a urlencoded post (Mailgun's form when there are no attachments) of UTF-8 beyond
    # latin-1 was once refused as a malformed form: the fields are bytes, kept as sent
    mime = (
        "From: Ana <ana@example.es>\r\nSubject: 50 €\r\nMessage-ID: <eur-1@example.es>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nTotal: 50 €\r\n"
    )
    data = {**signed("tok-eur"), "recipient": "support@acme.example", "body-mime": mime}
    resp = await client.post("/inbound/mailgun/acme", data=data)
    assert resp.status == 200
    (record,) = publisher.records
    assert record.provider_message_id == "eur-1@example.es"
    assert record.subject == "50 €"
    assert record.text == "Total: 50 €"


async def test_mailgun_parsed_fields_with_attachment(client: Client, publisher: FakePublisher) -> None:
    form = aiohttp.FormData()
    for k, v in signed("tok-2").items():
        form.add_field(k, v)
    form.add_field("recipient", "support@acme.example")
    headers = [["From", "Ana <ana@example.es>"], ["Subject", "Factura"], ["Message-Id", "<mg-1@example.es>"]]
    form.add_field("message-headers", json.dumps(headers))
    form.add_field("body-plain", "Adjunto la factura.")
    form.add_field("attachment-1", b"%PDF-1.4 fake", filename="factura.pdf", content_type="application/pdf")
    resp = await client.post("/inbound/mailgun/acme", data=form)
    assert resp.status == 200
    (record,) = publisher.records
    assert record.subject == "Factura"
    assert record.text == "Adjunto la factura."
    assert record.contact.display_name == "Ana"
    assert record.provider_message_id == "mg-1@example.es"
    (att,) = record.attachments
    assert (att.filename, att.content_type, att.size) == ("factura.pdf", "application/pdf", 13)


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({}, 401, "missing_signature"),
        ({**signed("tok-3"), "signature": "0" * 64}, 403, "invalid_signature"),
        (signed("tok-4", key="wrong-key"), 403, "invalid_signature"),
        (signed("tok-5", timestamp=NOW_TS - 3600), 403, "stale_timestamp"),
    ],
)
async def test_mailgun_refusals(
    client: Client, publisher: FakePublisher, fields: dict[str, str], status: int, code: str
) -> None:
    resp = await client.post("/inbound/mailgun/acme", data={**fields, "body-mime": "From: a@x.example\r\n\r\nhi"})
    assert resp.status == status
    assert await error_of(resp) == code
    assert publisher.records == []


async def test_mailgun_other_tenant_key_is_refused(client: Client) -> None:
    resp = await client.post("/inbound/mailgun/globex", data={**signed("tok-6"), "body-mime": "x"})
    assert resp.status == 403


async def test_mailgun_replay_refused_but_retry_after_503_accepted(client: Client, publisher: FakePublisher) -> None:
    data = {**signed("tok-7"), "body-mime": "From: a@x.example\r\nMessage-ID: <r@x>\r\n\r\nhi"}
    publisher.fail = True
    first = await client.post("/inbound/mailgun/acme", data=data)
    assert first.status == 503
    assert first.headers["Retry-After"] == "30"
    assert await error_of(first) == "broker_unavailable"
    publisher.fail = False
    retry = await client.post("/inbound/mailgun/acme", data=data)
    assert retry.status == 200
    replay = await client.post("/inbound/mailgun/acme", data=data)
    assert replay.status == 403
    assert await error_of(replay) == "replayed_token"
    assert len(publisher.records) == 1


async def test_mailgun_wrong_content_type_415(client: Client) -> None:
    resp = await client.post("/inbound/mailgun/acme", json={"token": "x"})
    assert resp.status == 415
    assert await error_of(resp) == "unsupported_media_type"


async def test_invalid_tenant_in_path_404(client: Client) -> None:
    resp = await client.post("/inbound/mailgun/Not_A_Tenant!", data=signed("tok-8"))
    assert resp.status == 404


# --------------------------------------------------------------------------- SendGrid


def sendgrid_form(**fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for k, v in fields.items():
        form.add_field(k, v)
    return form


async def test_sendgrid_raw_mime_secret_in_path(client: Client, publisher: FakePublisher) -> None:
    form = sendgrid_form(
        email=(CORPUS / "outlook_reply.eml").read_text(encoding="latin-1"),
        envelope=json.dumps({"to": ["support@acme.example"], "from": "bjorn.muller@contoso.com"}),
    )
    resp = await client.post(f"/inbound/sendgrid/acme/{SENDGRID_SECRET}", data=form)
    assert resp.status == 200
    (record,) = publisher.records
    assert record.provider == "sendgrid"
    assert record.inbox == "support"
    assert record.subject == "AW: Rechnung für März"


async def test_sendgrid_parsed_fields_basic_auth(client: Client, publisher: FakePublisher) -> None:
    form = sendgrid_form(
        headers="From: Kim <kim@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        "Message-ID: <sg-1@example.org>\r\nAuto-Submitted: auto-replied\r\n",
        text="Out until Monday",
        html="<p>Out until Monday</p>",
        envelope=json.dumps({"to": ["support+abc@acme.example"], "from": "kim@example.org"}),
    )
    resp = await client.post("/inbound/sendgrid/acme", data=form, headers=basic(f"any:{SENDGRID_SECRET}"))
    assert resp.status == 200
    (record,) = publisher.records
    assert record.subject == "Grüße"
    assert record.text == "Out until Monday"
    assert record.html == "<p>Out until Monday</p>\n"
    assert record.reply_token == "abc"
    assert record.automated is not None
    assert record.automated.value == "auto_reply"


def raw_multipart(fields: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with fields sent as the exact bytes given (as SendGrid does)."""
    parts = b"".join(
        b'--sgb\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in fields.items()
    )
    return parts + b"--sgb--\r\n", {"Content-Type": "multipart/form-data; boundary=sgb"}


async def test_sendgrid_non_utf8_fields_and_raw_8bit_mime(client: Client, publisher: FakePublisher) -> None:
    url = f"/inbound/sendgrid/acme/{SENDGRID_SECRET}"
    body, headers = raw_multipart(
        {
            "headers": b"From: Ana <ana@example.es>\r\nSubject: Pedido\r\n",
            "text": "El pedido lleg\xf3 roto".encode("iso-8859-1"),
            "charsets": json.dumps({"headers": "UTF-8", "text": "iso-8859-1"}).encode(),
        }
    )
    resp = await client.post(url, data=body, headers=headers)
    assert resp.status == 200
    body, headers = raw_multipart({"email": (CORPUS / "windows1252_plain.eml").read_bytes()})
    resp = await client.post(url, data=body, headers=headers)
    assert resp.status == 200
    parsed, raw = publisher.records
    assert parsed.text == "El pedido llegó roto"
    assert raw.text == "El pedido llegó \u201croto\u201d \u20ac 50."
    assert raw.provider_message_id == "cp1252-1@example.es"


async def test_chunked_oversize_is_413_while_streaming(publisher: FakePublisher) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        for _ in range(10):
            yield b"x" * 1024
        yield b"\r\n--b--\r\n"

    async with TestClient(TestServer(build_app(publisher, max_body_bytes=4096))) as c:
        resp = await c.post(
            f"/inbound/sendgrid/acme/{SENDGRID_SECRET}",
            data=body(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert resp.status == 413
        assert await error_of(resp) == "too_large"
    assert publisher.records == []


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/inbound/sendgrid/acme/wrong", {}, 403, "invalid_credentials"),
        ("/inbound/sendgrid/acme", {}, 401, "missing_credentials"),
        ("/inbound/sendgrid/acme", basic("u:wrong"), 403, "invalid_credentials"),
        ("/inbound/sendgrid/globex/" + SENDGRID_SECRET, {}, 403, "invalid_credentials"),
    ],
)
async def test_sendgrid_auth_refusals(
    client: Client, publisher: FakePublisher, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    resp = await client.post(path, data=sendgrid_form(email="From: a@x.example\r\n\r\nhi"), headers=headers)
    assert resp.status == status
    assert await error_of(resp) == code
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert publisher.records == []


async def test_sendgrid_urlencoded_is_415_and_empty_form_400(client: Client) -> None:
    url = f"/inbound/sendgrid/acme/{SENDGRID_SECRET}"
    resp = await client.post(url, data={"email": "x"})
    assert resp.status == 415
    resp = await client.post(url, data=sendgrid_form(text="no headers"))
    assert resp.status == 400
    assert await error_of(resp) == "malformed_payload"


# --------------------------------------------------------------------------- Postmark


def postmark_payload() -> dict[str, object]:
    return {
        "FromName": "Chloé Martin",
        "From": "chloe@icloud.com",
        "FromFull": {"Email": "chloe@icloud.com", "Name": "Chloé Martin"},
        "To": "support+pm7@acme.example",
        "ToFull": [{"Email": "support+pm7@acme.example", "Name": "", "MailboxHash": "pm7"}],
        "OriginalRecipient": "support+pm7@acme.example",
        "Subject": "Parcel damaged",
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "Date": "Thu, 19 Nov 2026 21:04:11 +0100",
        "TextBody": "The box was crushed.\n\nOn 18 Nov 2026, Shop wrote:\n> Shipped.",
        "HtmlBody": "<p>The box was crushed.</p>",
        "Headers": [{"Name": "In-Reply-To", "Value": "<order-5512@shop.example>"}],
        "Attachments": [
            {
                "Name": "photo.png",
                "Content": base64.b64encode(b"\x89PNG fake").decode(),
                "ContentType": "image/png",
                "ContentLength": 9,
            }
        ],
    }


async def test_postmark_json_accepted(client: Client, publisher: FakePublisher) -> None:
    resp = await client.post("/inbound/postmark/acme", json=postmark_payload(), headers=basic(POSTMARK_AUTH))
    assert resp.status == 200
    (record,) = publisher.records
    assert record.provider == "postmark"
    assert record.provider_message_id == "73e6d360-66eb-11e1-8e72-a8904824019b"
    assert record.contact.display_name == "Chloé Martin"
    assert record.reply_token == "pm7"
    assert record.inbox == "support"
    assert record.references == ("order-5512@shop.example",)
    assert record.text == "The box was crushed."
    assert record.text_quoted is not None
    assert "Shipped." in record.text_quoted
    assert [(a.filename, a.size) for a in record.attachments] == [("photo.png", 9)]
    assert record.sent_at == datetime(2026, 11, 19, 20, 4, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "body", "content_type", "status", "code"),
    [
        ({}, b"{}", "application/json", 401, "missing_credentials"),
        (basic("postmark:nope"), b"{}", "application/json", 403, "invalid_credentials"),
        (basic(POSTMARK_AUTH), b"{}", "text/plain", 415, "unsupported_media_type"),
        (basic(POSTMARK_AUTH), b"{not json", "application/json", 400, "malformed_json"),
        (basic(POSTMARK_AUTH), b"[1, 2]", "application/json", 400, "malformed_payload"),
        (
            basic(POSTMARK_AUTH),
            json.dumps({"From": "a@x.example", "Attachments": [{"Name": "a", "Content": "!!"}]}).encode(),
            "application/json",
            400,
            "malformed_payload",
        ),
    ],
)
async def test_postmark_refusals(
    client: Client,
    publisher: FakePublisher,
    headers: dict[str, str],
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    resp = await client.post("/inbound/postmark/acme", data=body, headers={**headers, "Content-Type": content_type})
    assert resp.status == status
    assert await error_of(resp) == code
    assert publisher.records == []


async def test_oversize_413(publisher: FakePublisher) -> None:
    async with TestClient(TestServer(build_app(publisher, max_body_bytes=2048))) as c:
        big = {"From": "a@x.example", "TextBody": "x" * 10_000}
        resp = await c.post("/inbound/postmark/acme", json=big, headers=basic(POSTMARK_AUTH))
        assert resp.status == 413
        assert await error_of(resp) == "too_large"
        form = sendgrid_form(email="From: a@x.example\r\n\r\n" + "y" * 10_000)
        resp = await c.post(f"/inbound/sendgrid/acme/{SENDGRID_SECRET}", data=form)
        assert resp.status == 413
        assert c.app is not None
        assert c.app[WEBHOOKS].max_body_bytes == 2048
    assert publisher.records == []


async def test_postmark_broker_down_503(client: Client, publisher: FakePublisher) -> None:
    publisher.fail = True
    resp = await client.post("/inbound/postmark/acme", json=postmark_payload(), headers=basic(POSTMARK_AUTH))
    assert resp.status == 503
    assert await error_of(resp) == "broker_unavailable"


def test_replay_cache_is_bounded_and_expires() -> None:
    cache = ReplayCache(max_entries=3, ttl_seconds=10)
    for i in range(5):
        cache.add(f"t{i}", now=100.0)
    assert len(cache) == 3
    assert not cache.seen("t0", now=100.0)
    assert cache.seen("t4", now=105.0)
    assert not cache.seen("t4", now=111.0)
    assert len(cache) == 0


async def test_sendgrid_dkim_verdict_verifies_the_from_handle(client: Client, publisher: FakePublisher) -> None:
    headers = "From: Kim <kim@example.org>\r\nReply-To: desk@other.example\r\nMessage-ID: <sg-v1@example.org>\r\n"
    for dkim, envelope_from in (("{@example.org : pass}", "bounce@mailer.example"), ("{@evil.example : pass}", None)):
        form = sendgrid_form(
            headers=headers,
            text="hello",
            dkim=dkim,
            SPF="pass",
            envelope=json.dumps({"to": ["support@acme.example"], "from": envelope_from or "x@evil.example"}),
        )
        resp = await client.post(f"/inbound/sendgrid/acme/{SENDGRID_SECRET}", data=form)
        assert resp.status == 200
    good, forged = publisher.records
    assert {h.value: h.verified for h in good.contact.handles} == {"desk@other.example": False, "kim@example.org": True}
    assert good.provider_metadata["sender_verified_by"] == "provider:sendgrid"
    assert not any(h.verified for h in forged.contact.handles)


async def test_mailgun_spf_verdict_needs_an_aligned_envelope_sender(client: Client, publisher: FakePublisher) -> None:
    raw = b"From: Kim <kim@example.org>\r\nMessage-ID: <mg-v1@example.org>\r\n\r\nhello\r\n"
    for token, sender in (("tok-v1", "bounce@mail.example.org"), ("tok-v2", "bounce@evil.example")):
        form = aiohttp.FormData({**signed(token), "sender": sender, "X-Mailgun-Spf": "Pass"})
        form.add_field("body-mime", raw.decode())
        resp = await client.post("/inbound/mailgun/acme", data=form)
        assert resp.status == 200
    aligned_record, misaligned = publisher.records
    assert aligned_record.contact.handles[0].verified
    assert not misaligned.contact.handles[0].verified


@pytest.mark.parametrize("record_id", ["0f8fad5b-d9cb-469f-a165-70867728950e", 'a "quoted" \\ id', "ünïcödé"])
def test_the_accepted_answer_is_json_responses_byte_for_byte(record_id: str) -> None:
    fast, generic = accepted(record_id), web.json_response({"status": "accepted", "id": record_id})
    assert fast.body == generic.body
    assert fast.status == generic.status == 200
    assert dict(fast.headers) == dict(generic.headers)
