"""Inbound-email webhooks of Mailgun, SendGrid Inbound Parse and Postmark.

Routes (the tenant is always the authenticated endpoint's, never the body's):

* ``POST /inbound/mailgun/{tenant}``: form data signed with the tenant's Mailgun signing key;
* ``POST /inbound/sendgrid/{tenant}/{secret}`` or ``POST /inbound/sendgrid/{tenant}`` with
  basic auth (the password is the tenant's secret): multipart form, raw MIME in ``email``
  or parsed fields;
* ``POST /inbound/postmark/{tenant}``: Postmark's inbound JSON, with basic auth.

Whenever a provider posts parsed fields instead of raw MIME, they are put back together
as MIME (:func:`mime_from_fields`) so that one normalization serves every way in.
Every refusal is JSON ``{"error": code, "detail": text}``: 401/403 credentials, 415 content
type, 413 size, 400 unparseable, 503 broker or blob store unavailable (the provider retries).
The providers' own SPF/DKIM verdicts go to sender verification (:mod:`.provider_verdicts`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import aiohttp
from aiohttp import web

from switchboard.common.logging import get_logger

from .blobs import BlobStoreError
from .forms import Form, FormError, read_form
from .ingest import EmailIngestor
from .provider_verdicts import mailgun_verdict, postmark_verdict, sendgrid_verdict
from .publish import PublishError
from .record_size import RecordTooLarge
from .routing import InvalidAddress, RecipientMap, Route
from .sender_auth import ProviderVerdict
from .webhook_auth import AuthError, MailgunVerifier, check_basic_auth, check_secret

__all__ = ["WEBHOOKS", "InboundWebhooks", "WebhookCredentials", "accepted", "mime_from_fields"]

log = get_logger(__name__)

_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class WebhookCredentials:
    """Per-tenant secrets, as plain strings (unwrapped from ``SecretStr`` at the composition root)."""

    mailgun_signing_keys: Mapping[str, str] = field(default_factory=dict)
    sendgrid_secrets: Mapping[str, str] = field(default_factory=dict)
    postmark_basic_auth: Mapping[str, str] = field(default_factory=dict)  # tenant -> "user:password"


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _error(status: int, code: str, detail: str) -> web.Response:
    headers = {"Retry-After": "30"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Basic realm="switchboard"'}
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def accepted(record_id: str) -> web.Response:
    """``web.json_response({"status": "accepted", "id": record_id})``, byte for byte and header
    for header, without its generic dict encoding (about half the cost, on every message)."""
    body = b'{"status": "accepted", "id": ' + json.dumps(record_id).encode() + b"}"
    return web.Response(body=body, content_type="application/json", charset="utf-8")


_HeaderList = list[tuple[str, str]]
_AttachmentList = list[tuple[str | None, str, bytes, str | None]]  # filename, type, content, cid

_SKIP_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version", "content-disposition"})
_CRLF_RE = re.compile(r"[\r\n]+[ \t]*")


def mime_from_fields(
    headers: Sequence[tuple[str, str]],
    *,
    text: str | None,
    html: str | None,
    attachments: Sequence[tuple[str | None, str, bytes, str | None]] = (),
) -> bytes:
    """An RFC 5322 message rebuilt from a provider's parsed fields (headers kept as given)."""
    body = EmailMessage(policy=SMTP_POLICY)
    if text is not None or html is None:
        body.set_content(text or "", subtype="plain", charset="utf-8")
        if html is not None:
            body.add_alternative(html, subtype="html", charset="utf-8")
    else:
        body.set_content(html, subtype="html", charset="utf-8")
    for filename, content_type, content, cid in attachments:
        maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
        extra: dict[str, Any] = {"filename": filename} if filename else {}
        if cid:
            extra["cid"] = f"<{cid.strip('<>')}>"
        body.add_attachment(
            content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            disposition="inline" if cid else "attachment",
            **extra,
        )
    lines = []
    for name, value in headers:
        name = name.strip()
        if not name or name.lower() in _SKIP_HEADERS or not re.fullmatch(r"[!-9;-~]+", name):
            continue
        lines.append(f"{name}: {_CRLF_RE.sub(' ', value).strip()}\r\n".encode())
    return b"".join(lines) + body.as_bytes()


def _parse_header_block(block: str) -> _HeaderList:
    """A raw header block (``Name: value`` lines with folding) as a list of pairs."""
    out: _HeaderList = []
    for line in block.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        if line[0] in " \t" and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            out.append((name.strip(), value.strip()))
    return out


@dataclass
class InboundWebhooks:
    ingestor: EmailIngestor
    credentials: WebhookCredentials
    mailgun: MailgunVerifier
    recipients: RecipientMap | None = None
    max_body_bytes: int = 36 * 1024 * 1024  # a 25 MiB message, base64-encoded in a form

    def add_routes(self, app: web.Application) -> None:
        app[WEBHOOKS] = self
        app.router.add_post("/inbound/mailgun/{tenant}", self.mailgun_handler)
        app.router.add_post("/inbound/sendgrid/{tenant}", self.sendgrid_handler)
        app.router.add_post("/inbound/sendgrid/{tenant}/{secret}", self.sendgrid_handler)
        app.router.add_post("/inbound/postmark/{tenant}", self.postmark_handler)

    # ------------------------------------------------------------------ common

    def _route(self, tenant: str, recipient: str | None) -> Route:
        """The tenant's route; the inbox hint comes from the recipient map when it agrees."""
        if recipient and self.recipients is not None:
            try:
                mapped = self.recipients.resolve(recipient)
            except InvalidAddress:
                mapped = None
            if mapped is not None and mapped.tenant_id == tenant:
                return mapped
        return Route(tenant)

    def _check_size(self, request: web.Request) -> web.Request:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _Refused(413, "too_large", f"request body is over {self.max_body_bytes} bytes")
        if request.client_max_size == self.max_body_bytes:
            return request  # the application's own limit is ours (as build_app sets it)
        return request.clone(client_max_size=self.max_body_bytes)

    @staticmethod
    def _check_type(request: web.Request, allowed: Sequence[str]) -> None:
        # the media type only: aiohttp's full parameter parser costs milliseconds, and
        # request.post() parses the header once more anyway
        if _media_type(request) not in allowed:
            raise _Refused(415, "unsupported_media_type", f"expected {' or '.join(allowed)}")

    async def _form(self, request: web.Request) -> Form:
        """The form's fields as raw bytes, read with the body-size cap applied as it streams in."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _Refused(413, "too_large", f"request body is over {self.max_body_bytes} bytes")
        try:
            return await read_form(
                request.headers.get("Content-Type", ""), request.content.iter_any(), self.max_body_bytes
            )
        except FormError as exc:
            raise _Refused(exc.status, exc.code, exc.detail) from None
        except aiohttp.ClientPayloadError as exc:  # the client broke off mid-body
            raise _Refused(400, "malformed_form", f"form data could not be read: {type(exc).__name__}") from None

    async def _publish(
        self,
        raw: bytes,
        *,
        tenant: str,
        provider: str,
        recipient: str | None,
        sender: str | None,
        metadata: Mapping[str, Any] | None = None,
        verdict: ProviderVerdict | None = None,
    ) -> web.Response:
        try:
            record = await self.ingestor.ingest(
                raw,
                route=self._route(tenant, recipient),
                provider=provider,
                recipient=recipient,
                envelope_sender=sender,
                provider_metadata=metadata,
                provider_verdict=verdict,
            )
        except PublishError:
            log.warning("webhook message not acknowledged by the broker", tenant=tenant, provider=provider)
            return _error(503, "broker_unavailable", "the message could not be stored; retry later")
        except BlobStoreError:
            log.warning("webhook message content could not be stored", tenant=tenant, provider=provider)
            return _error(503, "blob_store_unavailable", "the attachments could not be stored; retry later")
        except RecordTooLarge as exc:
            log.warning("webhook message too large to publish", tenant=tenant, provider=provider)
            return _error(413, "too_large", str(exc))
        return accepted(record.id)

    async def _guard(self, request: web.Request, handler: Any) -> web.Response:
        tenant = request.match_info["tenant"]
        if not _TENANT_RE.match(tenant):
            return _error(404, "unknown_endpoint", "no such inbound endpoint")
        try:
            response: web.Response = await handler(request, tenant)
        except AuthError as exc:
            log.info("webhook refused", provider=request.path.split("/")[2], tenant=tenant, reason=exc.code)
            return _error(exc.status, exc.code, exc.detail)
        except _Refused as exc:
            return _error(exc.status, exc.code, exc.detail)
        return response

    # ------------------------------------------------------------------ Mailgun

    async def mailgun_handler(self, request: web.Request) -> web.Response:
        return await self._guard(request, self._mailgun)

    async def _mailgun(self, request: web.Request, tenant: str) -> web.Response:
        self._check_type(request, _FORM_TYPES)
        form = await self._form(request)
        token = form.text("token")
        self.mailgun.verify(tenant, form.text("timestamp"), token, form.text("signature"))
        recipient = form.text("recipient")
        sender = form.text("sender")
        raw = form.fields.get("body-mime")
        if raw is None:
            headers = _json_pairs(form.text("message-headers"))
            if not headers:
                raise _Refused(400, "malformed_payload", "neither body-mime nor message-headers present")
            raw = mime_from_fields(
                headers,
                text=form.text("body-plain"),
                html=form.text("body-html"),
                attachments=[(f, t, d, None) for name, f, t, d in form.files if name.startswith("attachment-")],
            )
        verdict = mailgun_verdict(form.text("X-Mailgun-Spf"), form.text("X-Mailgun-Dkim-Check-Result"), sender)
        response = await self._publish(
            raw, tenant=tenant, provider="mailgun", recipient=recipient, sender=sender, verdict=verdict
        )
        if response.status == 200 and token:
            self.mailgun.accept(tenant, token)
        return response

    # ------------------------------------------------------------------ SendGrid

    async def sendgrid_handler(self, request: web.Request) -> web.Response:
        return await self._guard(request, self._sendgrid)

    async def _sendgrid(self, request: web.Request, tenant: str) -> web.Response:
        expected = self.credentials.sendgrid_secrets.get(tenant)
        secret = request.match_info.get("secret")
        if secret is not None:
            check_secret(expected, secret)
        else:
            check_basic_auth(expected, request.headers.get("Authorization"), password_only=True)
        self._check_type(request, ("multipart/form-data",))
        form = await self._form(request)
        charsets = {k: v for k, v in _json_object(form.text("charsets")).items() if isinstance(v, str)}
        envelope = _json_object(form.text("envelope"))
        to = envelope.get("to")
        recipient = to[0] if isinstance(to, list) and to and isinstance(to[0], str) else None
        sender = envelope.get("from") if isinstance(envelope.get("from"), str) else None
        raw = form.fields.get("email")
        if raw is None:
            header_block = form.text("headers", charsets.get("headers"))
            if not header_block:
                raise _Refused(400, "malformed_payload", "neither email nor headers present")
            info = _json_object(form.text("attachment-info"))
            attachments = []
            for name, filename, ctype, data in form.files:
                meta = info.get(name)
                cid = meta.get("content-id") if isinstance(meta, dict) else None
                attachments.append((filename, ctype, data, cid if isinstance(cid, str) else None))
            raw = mime_from_fields(
                _parse_header_block(header_block),
                text=form.text("text", charsets.get("text")),
                html=form.text("html", charsets.get("html")),
                attachments=attachments,
            )
        verdict = sendgrid_verdict(form.text("SPF"), form.text("dkim"), sender)
        return await self._publish(
            raw, tenant=tenant, provider="sendgrid", recipient=recipient, sender=sender, verdict=verdict
        )

    # ------------------------------------------------------------------ Postmark

    async def postmark_handler(self, request: web.Request) -> web.Response:
        return await self._guard(request, self._postmark)

    async def _postmark(self, request: web.Request, tenant: str) -> web.Response:
        check_basic_auth(self.credentials.postmark_basic_auth.get(tenant), request.headers.get("Authorization"))
        self._check_type(request, ("application/json",))
        request = self._check_size(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, "too_large", f"request body is over {self.max_body_bytes} bytes") from None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, "malformed_json", "request body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "malformed_payload", "expected a JSON object")
        recipient = _str(data.get("OriginalRecipient"))
        if not recipient:
            to_full = data.get("ToFull")
            if isinstance(to_full, list) and to_full and isinstance(to_full[0], dict):
                recipient = _str(to_full[0].get("Email"))
        raw_email = data.get("RawEmail")
        if isinstance(raw_email, str) and raw_email:
            raw = raw_email.encode("utf-8", "surrogateescape")
        else:
            raw = self._postmark_mime(data)
        from_full = data.get("FromFull")
        sender = _str(from_full.get("Email")) if isinstance(from_full, dict) else _str(data.get("From"))
        verdict = postmark_verdict(data.get("Headers"))
        return await self._publish(
            raw, tenant=tenant, provider="postmark", recipient=recipient, sender=sender, verdict=verdict
        )

    @staticmethod
    def _postmark_mime(data: Mapping[str, Any]) -> bytes:
        headers: _HeaderList = []
        for name, key in (
            ("From", "From"),
            ("To", "To"),
            ("Cc", "Cc"),
            ("Reply-To", "ReplyTo"),
            ("Subject", "Subject"),
            ("Date", "Date"),
        ):
            value = data.get(key)
            if isinstance(value, str) and value:
                headers.append((name, value))
        from_full = data.get("FromFull")
        if isinstance(from_full, dict) and from_full.get("Name") and from_full.get("Email"):
            headers = [h for h in headers if h[0] != "From"]
            name = str(from_full["Name"]).replace('"', "'")
            headers.insert(0, ("From", f'"{name}" <{from_full["Email"]}>'))
        message_id = data.get("MessageID")
        extra = data.get("Headers")
        names = set()
        if isinstance(extra, list):
            for item in extra:
                if isinstance(item, dict) and isinstance(item.get("Name"), str) and isinstance(item.get("Value"), str):
                    headers.append((item["Name"], item["Value"]))
                    names.add(item["Name"].lower())
        if "message-id" not in names and isinstance(message_id, str) and message_id:
            headers.append(("Message-ID", f"<{message_id.strip('<>')}>"))
        attachments: _AttachmentList = []
        raw_attachments = data.get("Attachments")
        if isinstance(raw_attachments, list):
            for item in raw_attachments:
                if not isinstance(item, dict) or not isinstance(item.get("Content"), str):
                    continue
                try:
                    content = base64.b64decode(item["Content"], validate=True)
                except binascii.Error:
                    raise _Refused(400, "malformed_payload", "an attachment is not valid base64") from None
                attachments.append(
                    (
                        _str(item.get("Name")),
                        _str(item.get("ContentType")) or "application/octet-stream",
                        content,
                        _str(item.get("ContentID")),
                    )
                )
        return mime_from_fields(
            headers, text=_str(data.get("TextBody")), html=_str(data.get("HtmlBody")), attachments=attachments
        )


WEBHOOKS = web.AppKey("ingest_email_webhooks", InboundWebhooks)


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _str(value: object) -> str | None:
    return value or None if isinstance(value, str) else None


def _json_pairs(value: str | None) -> _HeaderList:
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError:
        raise _Refused(400, "malformed_payload", "message-headers is not JSON") from None
    if not isinstance(data, list):
        raise _Refused(400, "malformed_payload", "message-headers is not a list")
    return [(str(p[0]), str(p[1])) for p in data if isinstance(p, list) and len(p) == 2]


def _json_object(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        raise _Refused(400, "malformed_payload", "a JSON form field is not valid JSON") from None
    return data if isinstance(data, dict) else {}
