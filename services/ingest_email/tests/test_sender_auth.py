"""Sender verification: DKIM with keys from a fake resolver, trusted Authentication-Results,
provider verdicts, and the ingestor marking the From handle verified."""

from __future__ import annotations

import base64

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from switchboard.common.events import InboundMessage
from switchboard.ingest_email.ingest import EmailIngestor
from switchboard.ingest_email.provider_verdicts import mailgun_verdict, postmark_verdict, sendgrid_verdict
from switchboard.ingest_email.routing import Route
from switchboard.ingest_email.sender_auth import SenderVerifier, VerificationPolicy, _header_block, aligned


class FakeResolver:
    """Serves DKIM key records from a dict; records every name asked for."""

    def __init__(self, records: dict[str, bytes]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def txt(self, name: str) -> bytes | None:
        self.asked.append(name)
        return self.records.get(name)


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def message(from_: str = "Ann <ann@acme.example>", body: bytes = b"Hello, my order is late.\r\n") -> bytes:
    return (
        f"From: {from_}\r\nTo: support@help.example\r\nSubject: order\r\n"
        "Message-ID: <m1@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
    ).encode() + body


def sign(raw: bytes, pem: bytes, domain: bytes = b"acme.example") -> bytes:
    sig: bytes = dkim.sign(raw, b"s1", domain, pem, include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + raw


def verifier(record: bytes, domain: str = "acme.example", **policy: object) -> tuple[SenderVerifier, FakeResolver]:
    resolver = FakeResolver({f"s1._domainkey.{domain}.": record})
    return SenderVerifier(VerificationPolicy(**policy), resolver), resolver  # type: ignore[arg-type]


async def test_signed_message_verifies(key: tuple[bytes, bytes]) -> None:
    v, resolver = verifier(key[1])
    result = await v.verify(sign(message(), key[0]), "ann@acme.example")
    assert result.verified
    assert result.method == "dkim"
    assert result.domain == "acme.example"
    assert resolver.asked == ["s1._domainkey.acme.example."]


async def test_tampered_body_does_not_verify(key: tuple[bytes, bytes]) -> None:
    v, _ = verifier(key[1])
    signed = sign(message(), key[0])
    tampered = signed.replace(b"my order is late", b"send me a refund")
    assert not (await v.verify(tampered, "ann@acme.example")).verified


async def test_signature_of_another_domain_does_not_verify_the_from(key: tuple[bytes, bytes]) -> None:
    v, resolver = verifier(key[1], domain="evil.example")
    signed = sign(message(), key[0], domain=b"evil.example")  # valid signature, misaligned d=
    assert not (await v.verify(signed, "ann@acme.example")).verified
    assert resolver.asked == []  # not even looked up


async def test_key_not_published_does_not_verify(key: tuple[bytes, bytes]) -> None:
    v, _ = verifier(key[1], domain="other.example")
    assert not (await v.verify(sign(message(), key[0]), "ann@acme.example")).verified


async def test_dkim_off_by_policy(key: tuple[bytes, bytes]) -> None:
    v, resolver = verifier(key[1], dkim=False)
    assert not (await v.verify(sign(message(), key[0]), "ann@acme.example")).verified
    assert resolver.asked == []


def test_relaxed_and_strict_alignment() -> None:
    assert aligned("acme.example", "mail.acme.example")
    assert aligned("mail.acme.co.uk", "acme.co.uk")
    assert not aligned("evil.co.uk", "acme.co.uk")
    assert not aligned("co.uk", "acme.co.uk")
    assert not aligned("acme.example", "mail.acme.example", "strict")


AR_PASS = (
    "Authentication-Results: mx.help.example; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example"
)


async def test_trusted_authserv_id_is_believed() -> None:
    v, _ = verifier(b"", trusted_authserv_ids=frozenset({"mx.help.example"}))
    result = await v.verify(AR_PASS.encode() + b"\r\n" + message(), "ann@acme.example")
    assert result.verified
    assert result.method is not None
    assert result.method.startswith("authres:mx.help.example")


async def test_untrusted_authserv_id_is_ignored() -> None:
    v, _ = verifier(b"", trusted_authserv_ids=frozenset({"mx.other.example"}))
    assert not (await v.verify(AR_PASS.encode() + b"\r\n" + message(), "ann@acme.example")).verified
    v2, _ = verifier(b"")  # the default trusts no relay at all
    assert not (await v2.verify(AR_PASS.encode() + b"\r\n" + message(), "ann@acme.example")).verified


async def test_only_the_topmost_trusted_header_counts() -> None:
    v, _ = verifier(b"", trusted_authserv_ids=frozenset({"mx.help.example"}))
    top = b"Authentication-Results: mx.help.example; dkim=fail header.d=acme.example; dmarc=fail\r\n"
    forged = AR_PASS.encode() + b"\r\n"  # the sender's own, further down
    assert not (await v.verify(top + forged + message(), "ann@acme.example")).verified


async def test_trusted_relay_pass_for_another_domain_does_not_verify() -> None:
    v, _ = verifier(b"", trusted_authserv_ids=frozenset({"mx.help.example"}))
    header = b"Authentication-Results: mx.help.example; dkim=pass header.d=evil.example\r\n"
    assert not (await v.verify(header + message(), "ann@acme.example")).verified


async def test_provider_verdicts() -> None:
    v, _ = verifier(b"", dkim=False)
    raw = message()
    assert (await v.verify(raw, "ann@acme.example", sendgrid_verdict("fail", "{@acme.example : pass}", None))).verified
    assert not (
        await v.verify(raw, "ann@acme.example", sendgrid_verdict("pass", "{@evil.example : pass}", "x@evil.example"))
    ).verified
    assert (await v.verify(raw, "ann@acme.example", mailgun_verdict("Pass", "Fail", "bounce@acme.example"))).verified
    # Mailgun's DKIM pass names no domain: an unsigned message, or one signed by another domain, gets nothing
    assert not (await v.verify(raw, "ann@acme.example", mailgun_verdict("Fail", "Pass", None))).verified
    headers = [
        {
            "Name": "Received-SPF",
            "Value": "Pass (sender SPF authorized) identity=mailfrom; envelope-from=b@acme.example",
        }
    ]
    assert (await v.verify(raw, "ann@acme.example", postmark_verdict(headers))).verified
    tests = [{"Name": "X-Spam-Tests", "Value": "DKIM_SIGNED,DKIM_VALID,DKIM_VALID_AU,SPF_PASS"}]
    assert (await v.verify(raw, "ann@acme.example", postmark_verdict(tests))).verified
    off, _ = verifier(b"", dkim=False, provider_verdicts=False)
    assert not (await off.verify(raw, "ann@acme.example", postmark_verdict(tests))).verified


class Collect:
    def __init__(self) -> None:
        self.records: list[InboundMessage] = []

    async def publish(self, record: InboundMessage, encoded: bytes) -> None:
        self.records.append(record)


async def test_ingestor_marks_only_the_from_handle_verified(key: tuple[bytes, bytes]) -> None:
    v, _ = verifier(key[1])
    out = Collect()
    ingestor = EmailIngestor(out, verifier=v)
    raw = sign(b"Reply-To: desk@elsewhere.example\r\n" + message(), key[0])
    record = await ingestor.ingest(raw, route=Route("acme"), provider="smtp")
    handles = {h.value: h.verified for h in record.contact.handles}
    assert handles == {"desk@elsewhere.example": False, "ann@acme.example": True}
    assert record.provider_metadata["sender_verified_by"] == "dkim"
    assert out.records == [record]
    unsigned = await ingestor.ingest(message(), route=Route("acme"), provider="smtp")
    assert not any(h.verified for h in unsigned.contact.handles)


async def test_two_from_addresses_are_never_verified(key: tuple[bytes, bytes]) -> None:
    v, _ = verifier(key[1])
    ingestor = EmailIngestor(Collect(), verifier=v)
    raw = sign(message(from_="ann@acme.example, bob@acme.example"), key[0])
    record = await ingestor.ingest(raw, route=Route("acme"), provider="smtp")
    assert not any(h.verified for h in record.contact.handles)


async def test_a_bare_lf_signed_message_still_verifies(key: tuple[bytes, bytes]) -> None:
    v, resolver = verifier(key[1])
    raw = sign(message(), key[0]).replace(b"\r\n", b"\n")  # dkimpy canonicalizes line endings
    assert (await v.verify(raw, "ann@acme.example")).verified
    assert resolver.asked == ["s1._domainkey.acme.example."]


async def test_a_signature_quoted_in_the_body_is_no_signature(key: tuple[bytes, bytes]) -> None:
    v, resolver = verifier(key[1])
    signed = sign(message(), key[0])
    for eol in (b"\r\n", b"\n"):  # a forwarded signed message pasted into the body, either line ending
        raw = message(body=b"see below" + eol + signed).replace(b"\r\n", eol)
        assert not (await v.verify(raw, "ann@acme.example")).verified
    assert resolver.asked == []  # only the header block is looked at: no key is ever fetched


def test_header_block_ends_at_the_first_empty_line() -> None:
    assert _header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == b"A: 1\r\nB: 2\r"
    assert _header_block(b"A: 1\nB: 2\n\nbody\n\nmore") == b"A: 1\nB: 2"
    assert _header_block(b"A: 1\nB: 2\n\nbody\r\n\r\nmore") == b"A: 1\nB: 2"  # the earlier of the two
    assert _header_block(b"A: 1\r\nB: 2") == b"A: 1\r\nB: 2"  # no body at all
    assert _header_block(b"A: 1\r\nB: 2\r\n", limit=4) == b"A: 1"
