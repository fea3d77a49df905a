"""Normalization over the corpus in ``tests/corpus`` and over generated hostile messages."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard.common.events import AutomatedKind, Channel, InboundMessage, decode, encode
from switchboard.ingest_email.blobs import BlobStoreError, LocalDirectoryBlobStore
from switchboard.ingest_email.ingest import store_blobs
from switchboard.ingest_email.normalize import (
    UNKNOWN_SENDER,
    NormalizeLimits,
    html_to_text,
    normalize_email,
    normalize_message,
    parse_msg_ids,
    split_html,
    split_reply,
    split_reply_token,
)

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def norm(raw: bytes, **kw: object) -> InboundMessage:
    kw.setdefault("tenant_id", "acme")
    kw.setdefault("provider", "smtp")
    kw.setdefault("received_at", NOW)
    return normalize_email(raw, **kw)


async def norm_stored(raw: bytes, store: object, **kw: object) -> InboundMessage:
    """Normalize with content kept, then store it as the ingestor does before publishing."""
    kw.setdefault("tenant_id", "acme")
    kw.setdefault("provider", "smtp")
    kw.setdefault("received_at", NOW)
    normalized = normalize_message(raw, store_content=True, **kw)  # type: ignore[arg-type]
    return await store_blobs(normalized, store)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- realistic mail


def test_gmail_reply_threads_and_splits_quote() -> None:
    msg = norm(load("gmail_reply.eml"), recipient="support+t0k3n42@example.com", inbox="billing")
    assert msg.channel is Channel.EMAIL
    assert msg.provider_message_id == "CAF=def456+reply@mail.gmail.com"
    assert msg.references == ("ticket-4821@support.example.com", "CAF=abc123@mail.gmail.com")
    assert msg.thread_ref == "ticket-4821@support.example.com"
    assert msg.reply_token == "t0k3n42"
    assert msg.recipient == "support@example.com"
    assert msg.inbox == "billing"
    assert msg.contact.display_name == "Jane Doe"
    assert msg.contact.handle("email") == "jane.doe@gmail.com"
    assert msg.subject == "Re: [#4821] Refund for order 1009"
    assert msg.text == "Thanks, the refund has not arrived yet. Can you check again?"
    assert msg.text_quoted is not None
    assert "We have issued the refund" in msg.text_quoted
    assert "wrote:" in msg.text_quoted
    assert msg.html is not None
    assert "gmail_quote" in msg.html
    assert msg.sent_at == datetime(2026, 11, 17, 9, 21, 33, tzinfo=UTC)
    assert msg.received_at == NOW
    assert msg.automated is None
    assert msg.parser_defects == ()
    assert msg.provider_metadata["parser"] == "fast-mail-parser"


def test_outlook_reply_latin1_rfc2047_and_separator() -> None:
    msg = norm(load("outlook_reply.eml"))
    assert msg.subject == "AW: Rechnung für März"
    assert msg.contact.display_name == "Björn Müller"
    assert msg.text.startswith("Hallo,")
    assert "die Rechnung für März fehlt noch." in msg.text
    assert msg.text_quoted is not None
    assert "please find the invoice attached" in msg.text_quoted
    assert "invoice" not in msg.text
    assert msg.language == "de"
    assert msg.thread_ref == "ticket-77@support.example.com"


def test_apple_mail_reply_signature_and_quote_split() -> None:
    msg = norm(load("apple_mail_reply.eml"))
    assert msg.contact.display_name == "Chloé Martin"
    assert msg.text == "The parcel arrived damaged, the box was crushed."
    assert msg.text_quoted is not None
    assert "Sent from my iPhone" in msg.text_quoted
    assert "Your order 5512 has shipped." in msg.text_quoted
    assert msg.references == ("order-5512-shipped@example.com",)


def test_windows_1252_body_and_headers() -> None:
    msg = norm(load("windows1252_plain.eml"))
    assert msg.subject == "Pedido \u201curgente\u201d"
    assert msg.contact.display_name == "Ana García"
    assert msg.text == "El pedido llegó \u201croto\u201d \u20ac 50."


def test_html_only_uses_html_parser_and_reply_to_contact() -> None:
    msg = norm(load("html_only.eml"))
    assert msg.text == "New message\nI cannot log in to my account.\nPlease help & reply soon."
    assert "alert" not in msg.text
    assert "color" not in msg.text
    assert msg.contact.display_name == "Visitor Name"
    assert [h.value for h in msg.contact.handles] == ["visitor@example.org", "noreply-form@site.example"]


def test_outlook_html_only_reply_splits_history() -> None:
    msg = norm(load("outlook_html_only_reply.eml"))
    assert msg.text == "Still no VPN access, the token is rejected.\nPriya"
    assert msg.text_quoted is not None
    assert "Please try again with the new token." in msg.text_quoted
    assert "From: Acme Support" in msg.text_quoted
    assert msg.thread_ref == "ticket-5521@support.example.com"


def test_gmail_html_only_reply_splits_gmail_quote() -> None:
    msg = norm(load("gmail_html_only_reply.eml"))
    assert msg.text == "The reset link has expired already.\nMarco"
    assert msg.text_quoted is not None
    assert "Here is your reset link." in msg.text_quoted
    assert "ha scritto:" in msg.text_quoted


def test_forwarded_message_is_attached_and_its_text_kept() -> None:
    msg = norm(load("forward_rfc822.eml"))
    assert msg.text == "Forwarding this, please take over."
    assert msg.text_quoted is not None
    assert "The product broke after two days." in msg.text_quoted
    assert "Forwarded message" in msg.text_quoted
    (att,) = msg.attachments
    assert att.content_type == "message/rfc822"
    assert att.filename == "Complaint.eml"
    assert att.size > 0


async def test_inline_image_and_rfc2231_filename(tmp_path: Path) -> None:
    store = LocalDirectoryBlobStore(tmp_path)
    msg = await norm_stored(load("attachments_rfc2231.eml"), store)
    assert msg.subject == "文書を送ります"
    assert msg.text == "Screenshot:"
    image, pdf = msg.attachments
    assert image.content_type == "image/png"
    assert image.content_id == "shot1@example.jp"
    assert image.inline is True
    assert pdf.filename == "請求書.pdf"
    assert pdf.inline is False
    assert pdf.blob_ref is not None
    content = store.get(pdf.blob_ref)
    assert content.startswith(b"%PDF-1.4")
    assert pdf.size == len(content)
    assert pdf.sha256 == hashlib.sha256(content).hexdigest()


def test_missing_message_id_gets_stable_hash() -> None:
    raw = load("attachments_rfc2231.eml")
    first, second = norm(raw), norm(raw)
    assert first.provider_message_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert first.provider_message_id == second.provider_message_id
    assert first.thread_ref == first.provider_message_id
    assert norm(raw + b"\n").provider_message_id != first.provider_message_id


def test_signed_mail_keeps_text_and_signature_as_attachment() -> None:
    msg = norm(load("signed_smime.eml"))
    assert msg.text == "Please close my account."
    assert [a.content_type for a in msg.attachments] == ["application/pkcs7-signature"]


# --------------------------------------------------------------------------- automated mail


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bounce_dsn.eml", AutomatedKind.BOUNCE),
        ("out_of_office.eml", AutomatedKind.AUTO_REPLY),
        ("bulk_newsletter.eml", AutomatedKind.BULK),
        ("gmail_reply.eml", None),
        ("outlook_reply.eml", None),
    ],
)
def test_automated_marking(name: str, kind: AutomatedKind | None) -> None:
    assert norm(load(name)).automated is kind


def test_auto_submitted_no_is_a_person() -> None:
    raw = b"From: a@x.example\r\nAuto-Submitted: no\r\nMessage-ID: <p@x>\r\n\r\nhi\r\n"
    assert norm(raw).automated is None


def test_precedence_junk_and_read_receipt() -> None:
    junk = b"From: a@x.example\r\nPrecedence: junk\r\n\r\nhi\r\n"
    assert norm(junk).automated is AutomatedKind.BULK
    receipt = (
        b"From: a@x.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nRead.\r\n--r--\r\n"
    )
    assert norm(receipt).automated is AutomatedKind.AUTO_REPLY


# --------------------------------------------------------------------------- hostile mail


def test_missing_boundary_is_recovered_from_body() -> None:
    msg = norm(load("missing_boundary.eml"))
    assert msg.text == "Body text that should still be kept."
    assert "multipart without boundary" in msg.parser_defects
    assert "boundary recovered from body" in msg.parser_defects


def test_missing_boundary_unrecoverable_falls_back_to_stdlib() -> None:
    raw = (
        b"From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
        b"just some text, no parts at all\r\n"
    )
    msg = norm(raw)
    assert "just some text" in msg.text
    assert msg.provider_metadata["parser"] == "stdlib"
    assert "NoBoundaryInMultipartDefect" in msg.parser_defects


def test_bad_base64_falls_back_and_records_defects() -> None:
    msg = norm(load("bad_base64.eml"))
    assert msg.provider_metadata["parser"] == "stdlib"
    assert msg.text == "See the attachment."
    assert msg.parser_defects[0].startswith("fast-mail-parser DecodeError")
    assert any("Base64" in d for d in msg.parser_defects[1:])
    (att,) = msg.attachments
    assert att.filename == "report.pdf"


def test_huge_header_is_capped() -> None:
    refs = " ".join(f"<ref{i}@x.example>" for i in range(5000))
    raw = (
        b"From: a@x.example\r\nSubject: " + b"A" * 200_000 + b"\r\n"
        b"References: " + refs.encode() + b"\r\nMessage-ID: <big@x.example>\r\n\r\nbody\r\n"
    )
    msg = norm(raw)
    assert msg.subject is not None
    assert len(msg.subject) == 998
    assert len(msg.references) == 100
    assert msg.thread_ref == "ref0@x.example"
    assert msg.references[-1] == "ref4999@x.example"
    assert "subject-truncated" in msg.parser_defects
    assert any(d.startswith("references-truncated") for d in msg.parser_defects)
    assert msg.text == "body"


async def test_attachment_bomb_many_parts_is_capped(tmp_path: Path) -> None:
    parts = b"".join(
        b'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="f%d.bin"\r\n'
        b"\r\nxx\r\n" % i
        for i in range(500)
    )
    raw = (
        b'From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n" + parts + b"--b--\r\n"
    )
    msg = await norm_stored(raw, LocalDirectoryBlobStore(tmp_path))
    assert msg.text == "hello"
    assert len(msg.attachments) == 100
    assert "attachments-truncated: 400 not kept" in msg.parser_defects


async def test_compressed_attachment_is_stored_as_is_never_decompressed(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)  # a small file that would expand to 5 MB
    import base64

    raw = (
        b'From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
        b'--b\r\nContent-Type: application/gzip\r\nContent-Disposition: attachment; filename="x.gz"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(bomb) + b"--b--\r\n"
    )
    store = LocalDirectoryBlobStore(tmp_path)
    msg = await norm_stored(raw, store)
    (att,) = msg.attachments
    assert att.size == len(bomb)
    assert att.blob_ref is not None
    assert store.get(att.blob_ref) == bomb


async def test_per_file_and_total_attachment_caps(tmp_path: Path) -> None:
    def part(name: str, size: int) -> bytes:
        return (
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n' + b"z" * size + b"\r\n"
        )

    raw = (
        b'From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + part("big", 3000)
        + part("a", 600)
        + part("b", 600)
        + b"--b--\r\n"
    )
    limits = NormalizeLimits(max_attachment_bytes=2000, max_total_attachment_bytes=1000)
    msg = await norm_stored(raw, LocalDirectoryBlobStore(tmp_path), limits=limits)
    big, a, b = msg.attachments
    assert big.blob_ref is None
    assert big.size == 3000
    assert big.sha256 is not None
    assert a.blob_ref is not None
    assert b.blob_ref is None
    assert "attachment-over-cap: 0" in msg.parser_defects
    assert "attachments-total-over-cap: 2" in msg.parser_defects


async def test_failing_blob_store_raises_so_nothing_is_published() -> None:
    class Broken:
        async def put(self, tenant_id: str, sha256: str, content: bytes, content_type: str) -> str:
            raise OSError("disk full")

    with pytest.raises(BlobStoreError):
        await norm_stored(load("signed_smime.eml"), Broken())


async def test_oversize_bodies_are_kept_whole_in_the_store(tmp_path: Path) -> None:
    body = ("word " * 400).encode()
    html = b"<p>" + b"x" * 3000 + b"</p>"
    raw = (
        b'From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        + body
        + b"\r\n--b\r\nContent-Type: text/html\r\n\r\n"
        + html
        + b"\r\n--b--\r\n"
    )
    store = LocalDirectoryBlobStore(tmp_path)
    limits = NormalizeLimits(max_text_chars=100, max_html_chars=200)
    msg = await norm_stored(raw, store, limits=limits)
    assert len(msg.text) <= 100
    assert "text-truncated" in msg.parser_defects
    text_ref, html_ref = msg.provider_metadata["text_blob_ref"], msg.provider_metadata["html_blob_ref"]
    assert isinstance(text_ref, str)
    assert isinstance(html_ref, str)
    assert store.get(text_ref).decode().strip() == body.decode().strip()
    assert store.get(html_ref) == html


def test_deep_nesting_does_not_crash() -> None:
    depth = 1000
    head = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1) for i in range(depth)
    )
    raw = (
        b'From: a@x.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        + head
        + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth
    )
    msg = norm(raw)
    assert "nesting" in msg.parser_defects[0]
    assert msg.provider_metadata["parser"] == "headers-only"
    assert not any(d.startswith("stdlib") for d in msg.parser_defects)  # the slow parser was spared
    assert msg.contact.handle("email") == "a@x.example"
    assert "deep" in msg.text


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"not an email at all",
        b"From: \r\n\r\n",
        b"Content-Type: text/plain; charset=x-no-such-charset\r\nFrom: a@x.example\r\n\r\n\xe9t\xe9\r\n",
        b"From: a@x.example\r\nDate: yesterday-ish\r\n\r\nhi\r\n",
    ],
)
def test_garbage_never_crashes_and_round_trips(raw: bytes) -> None:
    msg = norm(raw)
    assert isinstance(decode(encode(msg)), InboundMessage)
    assert msg.provider_message_id.startswith("sha256:")


def test_no_sender_uses_envelope_then_placeholder() -> None:
    raw = b"Subject: hi\r\n\r\nbody\r\n"
    assert norm(raw, envelope_sender="bounce@y.example").contact.handle("email") == "bounce@y.example"
    msg = norm(raw)
    assert msg.contact.handle("email") == UNKNOWN_SENDER
    assert "no-sender" in msg.parser_defects


def test_html_cap_and_text_cap() -> None:
    html = b"<p>" + b"word " * 50_000 + b"</p>"
    raw = b"From: a@x.example\r\nContent-Type: text/html\r\n\r\n" + html
    msg = norm(raw, limits=NormalizeLimits(max_html_chars=1000, max_text_chars=500))
    assert msg.html is not None
    assert len(msg.html) == 1000
    assert len(msg.text) <= 500
    assert {"html-truncated", "text-truncated"} <= set(msg.parser_defects)


@pytest.mark.parametrize("name", ["gmail_reply.eml", "outlook_reply.eml", "windows1252_plain.eml", "html_only.eml"])
def test_stdlib_and_fast_paths_agree(name: str) -> None:
    fast = norm(load(name))
    slow = norm(load(name), parser="stdlib")
    assert slow.provider_metadata["parser"] == "stdlib"
    for field in ("subject", "text", "text_quoted", "contact", "references", "thread_ref", "sent_at"):
        assert getattr(fast, field) == getattr(slow, field), field


# --------------------------------------------------------------------------- helpers


def test_split_reply_token() -> None:
    assert split_reply_token("support+abc_1.2=@example.com") == ("support@example.com", "abc_1.2=")
    assert split_reply_token("support@example.com") == ("support@example.com", None)
    assert split_reply_token("+tok@example.com") == ("+tok@example.com", None)
    assert split_reply_token("a+bad token@example.com") == ("a+bad token@example.com", None)
    assert split_reply_token(None) == (None, None)


def test_parse_msg_ids() -> None:
    assert parse_msg_ids("<a@x>\r\n <b@y> junk <c@z>") == ["a@x", "b@y", "c@z"]
    assert parse_msg_ids("bare@id.example") == ["bare@id.example"]
    assert parse_msg_ids(None) == []


def test_split_reply_without_quotes_keeps_everything() -> None:
    assert split_reply("Hello\nI need help.\n") == ("Hello\nI need help.", None)
    assert split_reply("   ") == ("", None)


def test_split_reply_long_history_is_all_quoted() -> None:
    history = "\n".join(f"> old line {i}" for i in range(500))
    text = "Short answer.\n\nOn Mon, Nov 16, 2026 at 4:02 PM Shop <s@shop.example> wrote:\n" + history
    new, quoted = split_reply(text)
    assert new == "Short answer."
    assert quoted is not None
    assert quoted.startswith("On Mon, Nov 16, 2026")
    assert quoted.endswith("> old line 499")


def test_split_reply_finds_header_after_an_early_false_hint() -> None:
    body = "I sent from my office yesterday. " + "More details here. " * 200
    text = body + "\n\nOn Mon, Nov 16, 2026 at 4:02 PM Shop <s@shop.example> wrote:\n> the old message"
    new, quoted = split_reply(text)
    assert new == body.strip()
    assert quoted is not None
    assert "> the old message" in quoted


def test_split_html_without_quote_and_nested_quote() -> None:
    assert split_html("<p>Hello</p><p>there</p>") == ("Hello\nthere", None)
    text, quoted = split_html("<div><p>new</p><blockquote>old</blockquote><p>after</p></div><div>trailing</div>")
    assert text == "new"
    assert quoted == "old\nafter\ntrailing"


def test_html_to_text_blocks_and_scripts() -> None:
    html = "<div>Hi <b>there</b></div><script>x()</script><p>a&amp;b</p><table><tr><td>1</td><td>2</td></tr></table>"
    assert html_to_text(html) == "Hi there\na&b\n1 2"


def test_local_blob_store_is_idempotent_and_safe(tmp_path: Path) -> None:
    store = LocalDirectoryBlobStore(tmp_path)
    sha = hashlib.sha256(b"abc").hexdigest()
    ref = store.put_sync("acme", sha, b"abc", "text/plain")
    assert store.put_sync("acme", sha, b"abc", "text/plain") == ref
    assert store.get(ref) == b"abc"
    assert not list(tmp_path.rglob(".tmp-*"))
    with pytest.raises(BlobStoreError):
        store.put_sync("../etc", sha, b"abc", "text/plain")
    with pytest.raises(BlobStoreError):
        store.put_sync("acme", "../../passwd", b"abc", "text/plain")
