"""Email over SMTP (aiosmtplib): a plain-text message whose Reply-To carries the reply token.

The agent's reply to ``support+<token>@domain`` comes back through ingest_email onto the
same conversation. Headers are built with :class:`email.message.EmailMessage` under
``policy.SMTP``, which refuses CR or LF in a header value; every displayed value is also
flattened to one line first, so customer-supplied text can never add a header.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar

import aiosmtplib

from switchboard.common.events import DeliveryEndpoint, Dispatch, EndpointKind, utcnow
from switchboard.notifier.outcome import DeliveryOutcome
from switchboard.notifier.render import clean_multiline, facts, headline, one_line
from switchboard.notifier.sink import BaseSink

_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


class EmailRefused(ValueError):
    """A recipient, sender or reply token that cannot go into a header safely."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    hostname: str = "localhost"
    port: int = 25
    use_tls: bool = False
    """Implicit TLS from the first byte (port 465)."""
    start_tls: bool | None = None
    """``True`` requires STARTTLS, ``False`` never uses it, ``None`` uses it when offered."""
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class MailIdentity:
    sender: str
    """The From address, for example ``switchboard@support.example.com``."""
    reply_local_part: str = "support"
    reply_domain: str | None = None
    """Reply-To is ``<reply_local_part>+<token>@<reply_domain>``; the sender's domain when unset."""
    sender_name: str = "Switchboard"


def _address(value: str, what: str) -> Address:
    if any(c in value for c in "\r\n\x00"):
        raise EmailRefused(f"{what} contains a line break")
    try:
        addr = Address(addr_spec=value)
    except (ValueError, IndexError) as exc:
        raise EmailRefused(f"{what} is not a valid address ({type(exc).__name__})") from None
    if not addr.username or not addr.domain:
        raise EmailRefused(f"{what} is not a valid address")
    return addr


def build_message(dispatch: Dispatch, endpoint: DeliveryEndpoint, identity: MailIdentity) -> EmailMessage:
    """The message for ``dispatch``; raises :class:`EmailRefused` for an unusable address or token."""
    conv = dispatch.conversation
    sender = _address(identity.sender, "sender")
    recipient = _address(endpoint.target, "recipient")
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["From"] = Address(display_name=one_line(identity.sender_name, 80), addr_spec=sender.addr_spec)
    msg["To"] = recipient
    subject = headline(dispatch)
    if conv.subject:
        subject = f"{subject}: {one_line(conv.subject, 150)}"
    msg["Subject"] = one_line(subject, 250)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{dispatch.dispatch_id}@{sender.domain}>"
    msg["X-Switchboard-Dispatch-Id"] = dispatch.dispatch_id
    msg["X-Switchboard-Conversation-Id"] = one_line(conv.conversation_id, 256)
    msg["Auto-Submitted"] = "auto-generated"
    if conv.reply_token:
        if not _TOKEN_RE.match(conv.reply_token):
            raise EmailRefused("reply token has characters not allowed in an address")
        domain = identity.reply_domain or sender.domain
        msg["Reply-To"] = _address(f"{identity.reply_local_part}+{conv.reply_token}@{domain}", "reply-to")
    lines = [headline(dispatch), ""]
    lines += [f"{f.label}: {f.value}" for f in facts(dispatch)]
    if conv.preview:
        lines += ["", clean_multiline(conv.preview)]
    if conv.link:
        lines += ["", f"Open: {one_line(conv.link, 2000)}"]
    if conv.reply_token:
        lines += ["", "Reply to this email to answer the customer."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


class EmailSink(BaseSink):
    """The endpoint target is the agent's email address."""

    kind: ClassVar[EndpointKind] = EndpointKind.EMAIL

    def __init__(self, smtp: SmtpConfig, identity: MailIdentity) -> None:
        self._smtp = smtp
        self._identity = identity

    async def deliver(self, dispatch: Dispatch, endpoint: DeliveryEndpoint) -> DeliveryOutcome:
        try:
            message = build_message(dispatch, endpoint, self._identity)
        except (EmailRefused, ValueError) as exc:
            return DeliveryOutcome.failed(f"email not built: {exc}")
        cfg = self._smtp
        try:
            await aiosmtplib.send(
                message,
                hostname=cfg.hostname,
                port=cfg.port,
                use_tls=cfg.use_tls,
                start_tls=cfg.start_tls,
                username=cfg.username,
                password=cfg.password,
                validate_certs=cfg.validate_certs,
                timeout=cfg.timeout,
                tls_context=cfg.tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            if any(400 <= c < 500 for c in codes):
                return DeliveryOutcome.retry(f"smtp refused the recipient temporarily ({codes})")
            return DeliveryOutcome.failed(f"smtp refused the recipient ({codes})")
        except aiosmtplib.SMTPResponseException as exc:
            error = f"smtp answered {exc.code} ({type(exc).__name__})"
            if 400 <= exc.code < 500 or isinstance(exc, aiosmtplib.SMTPConnectError):
                return DeliveryOutcome.retry(error)
            return DeliveryOutcome.failed(error)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return DeliveryOutcome.retry(f"smtp unreachable: {type(exc).__name__}")
        return DeliveryOutcome.delivered(f"<{dispatch.dispatch_id}@{message['From'].addresses[0].domain}>")
