"""Raw RFC 5322 bytes to an :class:`InboundMessage`: the one normalization every way in uses.

Parsing is two-tier. The fast path is ``fast-mail-parser`` (Rust, tens of microseconds a
message). The standard library's ``email`` package with ``policy.default`` (milliseconds a
message, but it records defects instead of raising) is the fallback, taken when the fast
parser raises, when the message declares a multipart type without a boundary, or when the
fast parser found nothing in a message that has a body. If even that fails (a recursion
bomb, a bug), a minimal message is still produced with the failure recorded in
``parser_defects``: normalization never raises on input.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Literal

import fast_mail_parser
from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES
from selectolax.lexbor import LexborHTMLParser, LexborNode

from switchboard.common.events import (
    Attachment,
    AutomatedKind,
    Channel,
    ContactHandle,
    ContactIdentity,
    InboundMessage,
    utcnow,
)

__all__ = [
    "NormalizeLimits",
    "Normalized",
    "PendingBlob",
    "html_to_text",
    "normalize_email",
    "normalize_message",
    "parse_msg_ids",
    "split_html",
    "split_reply",
    "split_reply_token",
]

UNKNOWN_SENDER = "unknown@invalid"
"""The contact handle used when a message names no sender at all (RFC 2606 reserved domain)."""


@dataclass(frozen=True, slots=True)
class NormalizeLimits:
    """Caps that keep one hostile message from costing unbounded memory, storage or CPU."""

    max_text_chars: int = 256 * 1024
    max_html_chars: int = 512 * 1024
    max_subject_chars: int = 998
    max_references: int = 100
    max_attachments: int = 100
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_total_attachment_bytes: int = 25 * 1024 * 1024
    max_reply_parse_chars: int = 64 * 1024
    max_defects: int = 50
    max_forward_bytes: int = 1024 * 1024
    max_record_bytes: int = 900 * 1024
    """The published record's encoded size at most (see :mod:`.record_size`)."""
    reply_languages: tuple[str, ...] = ("en",)


@dataclass(frozen=True, slots=True)
class PendingBlob:
    """Content to keep in the blob store before the record is published.

    ``target`` is ``attachment`` (``index`` into the record's attachments), ``text`` or
    ``html`` (a body over its cap, kept whole next to the truncated copy on the record).
    """

    target: Literal["attachment", "text", "html"]
    index: int
    sha256: str
    content: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalized record, with what still has to happen to it before it is published."""

    record: InboundMessage
    blobs: tuple[PendingBlob, ...] = ()
    author: str | None = None
    """The single From address, when the message has exactly one (what sender
    authentication can vouch for); ``None`` for zero or several."""


# --------------------------------------------------------------------------- parsed form


@dataclass(slots=True)
class _Part:
    content_type: str
    content: bytes
    filename: str | None
    content_id: str | None
    disposition: str | None


@dataclass(slots=True)
class _Parsed:
    """What both parsers produce: the flat projection the event is built from."""

    parser: str
    headers: dict[str, list[str]]  # lower-case names
    subject: str | None = None
    from_: list[tuple[str | None, str]] = field(default_factory=list)
    reply_to: list[tuple[str | None, str]] = field(default_factory=list)
    sent_at: datetime | None = None
    text_plain: list[str] = field(default_factory=list)
    text_html: list[str] = field(default_factory=list)
    parts: list[_Part] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def _lower_headers(headers: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, values in headers.items():
        out.setdefault(name.lower(), []).extend(values)
    return out


# --------------------------------------------------------------------------- fast path


class _NeedsFallback(Exception):
    def __init__(self, reason: str, *, hostile: bool = False) -> None:
        super().__init__(reason)
        self.hostile = hostile  # a resource guard tripped: the slow parser would only suffer more


_MULTIPART_RE = re.compile(r"^\s*multipart/", re.IGNORECASE)
_BOUNDARY_RE = re.compile(r"boundary\s*=", re.IGNORECASE)


def _parse_fast(raw: bytes) -> _Parsed:
    try:
        mail = fast_mail_parser.parse_email(raw)
    except fast_mail_parser.ParseError as exc:
        hostile = isinstance(exc, fast_mail_parser.MimeStructureError) and ("depth" in str(exc) or "limit" in str(exc))
        raise _NeedsFallback(f"fast-mail-parser {type(exc).__name__}: {exc}", hostile=hostile) from None
    headers = _lower_headers(mail.headers)
    ctype = (headers.get("content-type") or [""])[0]
    if _MULTIPART_RE.match(ctype) and not _BOUNDARY_RE.search(ctype):
        raise _NeedsFallback(_NO_BOUNDARY)
    parts = [
        _Part(a.mimetype.lower(), a.content, a.filename or None, a.content_id, a.disposition) for a in mail.attachments
    ]
    if not mail.text_plain and not mail.text_html and not parts and _has_body(raw):
        raise _NeedsFallback("fast parser found no content in a message with a body")
    parsed = _Parsed(parser="fast-mail-parser", headers=headers)
    parsed.subject = mail.subject or None
    if mail.from_ is not None:
        parsed.from_ = [(mail.from_.display_name, mail.from_.address)]
    parsed.reply_to = [(a.display_name, a.address) for a in mail.reply_to]
    parsed.sent_at = mail.date_parsed
    parsed.text_plain = list(mail.text_plain)
    parsed.text_html = list(mail.text_html)
    parsed.parts = parts
    parsed.defects = [f"{w.kind}: {w.detail}" for w in mail.warnings]
    return parsed


_NO_BOUNDARY = "multipart without boundary"
_BODY_BOUNDARY_RE = re.compile(rb"\A\s*--([0-9A-Za-z'()+_,./:=?-]{1,70})[ \t]*\r?\n")
_CTYPE_LINE_RE = re.compile(rb"^(content-type:[ \t]*multipart/[^\r\n;]*)", re.IGNORECASE | re.MULTILINE)


def _repair_boundary(raw: bytes) -> bytes | None:
    """A multipart message that forgot its boundary parameter, with the one its body uses put back."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    match = _BODY_BOUNDARY_RE.match(body)
    if not sep or match is None or not _CTYPE_LINE_RE.search(head):
        return None
    boundary = match.group(1).replace(b'"', b"")
    head = _CTYPE_LINE_RE.sub(lambda m: m.group(1) + b'; boundary="' + boundary + b'"', head, count=1)
    return head + sep + body


def _has_body(raw: bytes) -> bool:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = raw.find(sep)
        if idx >= 0:
            return bool(raw[idx + len(sep) :].strip())
    return False


# --------------------------------------------------------------------------- stdlib path

_MAX_MIME_DEPTH = 64


def _parse_stdlib(raw: bytes) -> _Parsed:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    parsed = _Parsed(parser="stdlib", headers={})
    for name, value in msg.raw_items():
        parsed.headers.setdefault(name.lower(), []).append(_header_str(value, parsed))
    subject = _safe_header(msg, "subject", parsed)
    parsed.subject = str(subject) if subject is not None else None
    parsed.from_ = _addresses(msg, "from", parsed)
    parsed.reply_to = _addresses(msg, "reply-to", parsed)
    date = parsed.header("date")
    if date:
        parsed.sent_at = _parse_date(date, parsed)
    for part in _leaves(msg, 0, parsed):
        _collect(part, parsed)
    for part in msg.walk():
        parsed.defects.extend(type(d).__name__ for d in part.defects)
    return parsed


def _parse_headers_only(raw: bytes) -> _Parsed:
    """Last resort: the headers, and the undecoded body as text (capped)."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        parsed = _Parsed(parser="headers-only", headers={})
        for name, value in msg.raw_items():
            parsed.headers.setdefault(name.lower(), []).append(_header_str(value, parsed))
        subject = _safe_header(msg, "subject", parsed)
        parsed.subject = str(subject) if subject is not None else None
        parsed.from_ = _addresses(msg, "from", parsed)
        parsed.reply_to = _addresses(msg, "reply-to", parsed)
        date = parsed.header("date")
        parsed.sent_at = _parse_date(date, parsed) if date else None
        payload = msg.get_payload()
        body = payload if isinstance(payload, str) else ""
    except Exception as exc:
        parsed = _Parsed(parser="none", headers={}, defects=[f"headers unreadable: {type(exc).__name__}"])
        body = raw.decode("utf-8", "replace")
    parsed.text_plain = [body[:65536]]
    return parsed


def _header_str(value: Any, parsed: _Parsed) -> str:
    try:
        return str(value)
    except Exception as exc:  # a header the policy cannot render
        parsed.defects.append(f"header-unreadable: {type(exc).__name__}")
        return ""


def _safe_header(msg: Message, name: str, parsed: _Parsed) -> Any:
    try:
        return msg.get(name)
    except Exception as exc:
        parsed.defects.append(f"header-unreadable {name}: {type(exc).__name__}")
        return None


def _addresses(msg: Message, name: str, parsed: _Parsed) -> list[tuple[str | None, str]]:
    value = _safe_header(msg, name, parsed)
    if value is None:
        return []
    try:
        addrs = value.addresses
    except AttributeError:
        addrs = ()
    out = [(a.display_name or None, a.addr_spec) for a in addrs if a.addr_spec and "@" in a.addr_spec]
    if not out:  # policy.default could not parse it; try the lenient compat parser
        out = [(n or None, a) for n, a in email.utils.getaddresses([str(value)]) if "@" in a]
    return out


def _parse_date(value: str, parsed: _Parsed) -> datetime | None:
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        parsed.defects.append("date-unparseable")
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _leaves(part: Message, depth: int, parsed: _Parsed) -> Iterator[Message]:
    """Leaf parts, not descending into attached messages (they are kept whole)."""
    if depth > _MAX_MIME_DEPTH:
        parsed.defects.append("mime-too-deep")
        return
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        if isinstance(payload, list):
            for child in payload:
                if isinstance(child, Message):
                    yield from _leaves(child, depth + 1, parsed)
        return
    yield part


def _collect(part: Message, parsed: _Parsed) -> None:
    ctype = part.get_content_type()
    disposition = part.get_content_disposition()
    if ctype == "message/rfc822" or part.is_multipart():
        inner = part.get_payload(0) if part.is_multipart() else None
        content = inner.as_bytes(policy=policy.SMTP) if isinstance(inner, Message) else b""
        parsed.parts.append(_Part(ctype, content, _filename(part, parsed), _cid(part), disposition))
        return
    raw = part.get_payload(decode=True)
    content = raw if isinstance(raw, bytes) else b""
    is_text = ctype in ("text/plain", "text/html") or part.get_content_maintype() == "multipart"
    if is_text and disposition != "attachment":
        text = _decode_text(content, part.get_content_charset(), parsed)
        (parsed.text_html if ctype == "text/html" else parsed.text_plain).append(text)
        return
    parsed.parts.append(_Part(ctype, content, _filename(part, parsed), _cid(part), disposition))


def _decode_text(content: bytes, charset: str | None, parsed: _Parsed) -> str:
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return content.decode(cs)
        except LookupError:
            parsed.defects.append("charset-unknown")
        except UnicodeDecodeError:
            parsed.defects.append("charset-mismatch")
    return content.decode("latin-1")


def _filename(part: Message, parsed: _Parsed) -> str | None:
    try:
        return part.get_filename()
    except Exception as exc:
        parsed.defects.append(f"filename-unreadable: {type(exc).__name__}")
        return None


def _cid(part: Message) -> str | None:
    value = part.get("content-id")
    return str(value).strip().strip("<>") or None if value is not None else None


# --------------------------------------------------------------------------- text helpers


_BLOCK_SELECTOR = "br,p,div,li,tr,h1,h2,h3,h4,h5,h6,blockquote,table,hr,pre,section,article,header,footer"


def _visible_text(root: LexborNode | None) -> str:
    if root is None:
        return ""
    for node in root.css(_BLOCK_SELECTOR):
        node.insert_after("\n")
    for node in root.css("td,th"):
        node.insert_after(" ")
    text = root.text(separator="", strip=False)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, scripts and styles dropped."""
    return split_html(html, split_quotes=False)[0]


_HTML_QUOTE_SELECTOR = (
    "div.gmail_quote, blockquote, div.yahoo_quoted, div.moz-cite-prefix, #divRplyFwdMsg, #appendonsend, "
    "div.OutlookMessageHeader"
)


def split_html(html: str, *, split_quotes: bool = True) -> tuple[str, str | None]:
    """(new text, quoted text) of an HTML body.

    The quoted history starts at the first quote container the common clients write
    (Gmail's ``gmail_quote``, ``blockquote``, Outlook's ``divRplyFwdMsg``/``appendonsend``,
    Yahoo, Thunderbird) and runs to the end of the message.
    """
    tree = LexborHTMLParser(html)
    tree.strip_tags(["script", "style", "head", "noscript", "template"])
    root = tree.body or tree.root
    if root is None:
        return "", None
    quoted_html: list[str] = []
    first = root.css_first(_HTML_QUOTE_SELECTOR) if split_quotes else None
    if first is not None:
        history = [first]
        node: LexborNode | None = first
        while node is not None and node is not root:
            sibling = node.next
            while sibling is not None:
                history.append(sibling)
                sibling = sibling.next
            node = node.parent
        for part in history:
            quoted_html.append(part.html or "")
            part.decompose()
    quoted = _visible_text(LexborHTMLParser("".join(quoted_html)).body) if quoted_html else ""
    return _visible_text(root), quoted or None


_QUOTE_HINTS = (
    "\n>",
    "\n-- \n",
    "\n--\n",
    "\n____",
    "-----original",
    "wrote:",
    "\nfrom:",
    "\nvon:",
    "\nde:",
    "\nda:",
    "\nvan:",
    "\nfrån:",
    "\nod:",
    "schrieb",
    "a écrit",
    "escribió",
    "ha scritto",
    "sent from",
    "get outlook",
    "gesendet von",
    "envoyé de",
    "enviado desde",
)


_LINE_HINTS_RE = re.compile("\n(?:" + "|".join(re.escape(h[1:]) for h in _QUOTE_HINTS if h.startswith("\n")) + ")")
_OTHER_HINTS = tuple(h for h in _QUOTE_HINTS if not h.startswith("\n"))
_OTHER_ASCII_HINTS = tuple(h for h in _OTHER_HINTS if h.isascii())  # all an ASCII text can hold


def _hints(text: str) -> tuple[int, int]:
    """Cheap prefilter (substring scans in C): where the first and the last quote, reply
    header or signature marker could start, or (-1, -1) when the text holds none.

    The markers that start a line are looked for in one pass (a regex whose literal
    ``\n`` prefix the engine skips to), the others by substring scans; only a text that
    holds one pays for locating each marker."""
    low = "\n" + text.lower()
    others = _OTHER_ASCII_HINTS if low.isascii() else _OTHER_HINTS
    if _LINE_HINTS_RE.search(low) is None and not any(hint in low for hint in others):
        return -1, -1
    found = [i for i in (low.find(hint) for hint in _QUOTE_HINTS) if i >= 0]
    if not found:
        return -1, -1
    return max(min(found) - 1, 0), max(max(found) - 1, 0)


_REPLY_WINDOW = 640
"""How far past the first hint the reply parser looks. Its regexes cost about 0.2 ms per KB,
so the quoted history (often most of a reply) is not fed to it: once it has found where
the history starts, the rest of the text is history too."""


@functools.lru_cache(maxsize=32)
def _reply_parser(languages: tuple[str, ...]) -> EmailReplyParser:
    return EmailReplyParser(languages=[lang for lang in languages if lang in MAIL_LANGUAGES] or ["en"])


def split_reply(text: str, languages: Sequence[str] = ("en",)) -> tuple[str, str | None]:
    """Split a plain-text body into (new text, quoted history and signature).

    Uses ``mail-parser-reply``; skipped (the whole text is new) when nothing in the text
    looks like a quote, a reply header or a signature, which keeps first messages cheap.
    """
    if not text.strip():
        return "", None
    first_hint, last_hint = _hints(text)
    if first_hint < 0:
        return text.strip(), None
    parser = _reply_parser(tuple(languages))
    cut = text.find("\n", first_hint + _REPLY_WINDOW)
    window, tail = (text, "") if cut < 0 else (text[:cut], text[cut:])
    try:
        replies = parser.read(window).replies
        if len(replies) < 2 and tail and last_hint > cut:  # a false hint early on: read it all
            window, tail = text, ""
            replies = parser.read(window).replies
    except Exception:  # the library is regex-based; never let it fail a message
        return text.strip(), None
    if len(replies) < 2 and not (replies and replies[0].signatures):
        return text.strip(), None  # nothing split off: all of it is new text
    if tail.strip():
        replies[-1].content += tail
    first = replies[0]
    new = first.body
    rest: list[str] = []
    if new and first.signatures:
        rest.append(first.signatures)
    elif not new:  # the signature heuristics swallowed everything: keep the whole reply
        new = first.full_body
    rest.extend(r.content for r in replies[1:] if r.content)
    if not new:  # nothing but quotes (a bare forward): the quoted text is all there is
        return "\n\n".join(rest).strip(), None
    quoted = "\n\n".join(rest).strip()
    return new.strip(), quoted or None


_MSG_ID_RE = re.compile(r"<([^<>\s]{1,998})>")


def parse_msg_ids(value: str | None) -> list[str]:
    """Message ids in a Message-ID, In-Reply-To or References value, without angle brackets."""
    if not value:
        return []
    ids = _MSG_ID_RE.findall(value)
    if not ids:  # some clients omit the brackets
        ids = [tok for tok in value.split() if "@" in tok and len(tok) <= 998]
    return ids


_TOKEN_RE = re.compile(r"^[A-Za-z0-9._=-]{1,128}$")


def split_reply_token(address: str | None) -> tuple[str | None, str | None]:
    """``support+abc123@example.com`` -> (``support@example.com``, ``abc123``)."""
    if not address or "@" not in address:
        return address, None
    local, _, domain = address.rpartition("@")
    base, plus, token = local.partition("+")
    if not plus or not base or not _TOKEN_RE.match(token):
        return address, None
    return f"{base}@{domain}", token


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _clean_filename(name: str | None) -> str | None:
    if not name:
        return None
    name = unicodedata.normalize("NFC", _CONTROL_RE.sub("", name)).strip()
    name = name.replace("/", "_").replace("\\", "_")
    return name[:255] or None


# --------------------------------------------------------------------------- classification


_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponse")


def _automated(parsed: _Parsed, content_type: str) -> AutomatedKind | None:
    ctype = content_type.lower()
    if ctype.startswith("multipart/report") and "delivery-status" in ctype:
        return AutomatedKind.BOUNCE
    if any(p.content_type in ("message/delivery-status", "message/global-delivery-status") for p in parsed.parts):
        return AutomatedKind.BOUNCE
    auto = (parsed.header("auto-submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return AutomatedKind.AUTO_REPLY
    if any(parsed.header(h) for h in _AUTO_REPLY_HEADERS):
        return AutomatedKind.AUTO_REPLY
    if ctype.startswith("multipart/report"):  # read receipts and other reports
        return AutomatedKind.AUTO_REPLY
    precedence = (parsed.header("precedence") or "").strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return AutomatedKind.AUTO_REPLY
    if precedence in ("bulk", "junk", "list"):
        return AutomatedKind.BULK
    return None


# --------------------------------------------------------------------------- assembly


def normalize_email(raw: bytes, **kwargs: Any) -> InboundMessage:
    """:func:`normalize_message`'s record alone (no content kept anywhere)."""
    kwargs.pop("store_content", None)
    return normalize_message(raw, **kwargs).record


def normalize_message(
    raw: bytes,
    *,
    tenant_id: str,
    provider: str,
    recipient: str | None = None,
    inbox: str | None = None,
    envelope_sender: str | None = None,
    store_content: bool = False,
    limits: NormalizeLimits | None = None,
    received_at: datetime | None = None,
    provider_metadata: Mapping[str, Any] | None = None,
    parser: Literal["auto", "stdlib"] = "auto",
) -> Normalized:
    """Normalize one raw RFC 5322 message into an ``InboundMessage`` on the email channel.

    Pure CPU work, no I/O. Never raises because of the message's content; only an invalid
    ``tenant_id`` or ``provider`` (caller errors) raise ``pydantic.ValidationError``. With
    ``store_content``, the attachments within the caps, and the whole text or HTML of a
    body over its cap, come back as :class:`PendingBlob` for the caller to store (and set
    ``blob_ref``) before publishing. ``parser="stdlib"`` skips the fast path (for
    comparison and benchmarks).
    """
    limits = limits or NormalizeLimits()
    pending: list[PendingBlob] = []
    defects: list[str] = []
    parsed: _Parsed | None = None
    hostile = False
    try:
        if parser == "stdlib":
            raise _NeedsFallback("stdlib parser requested")
        parsed = _parse_fast(raw)
    except _NeedsFallback as exc:
        if parser != "stdlib":
            defects.append(str(exc)[:200])
        hostile = exc.hostile
        repaired = _repair_boundary(raw) if str(exc) == _NO_BOUNDARY else None
        if repaired is not None:
            try:
                parsed = _parse_fast(repaired)
                defects.append("boundary recovered from body")
            except Exception:
                parsed = None
    except Exception as exc:  # the fast parser must never take a message down with it
        defects.append(f"fast-mail-parser crashed: {type(exc).__name__}")
    if parsed is None and hostile:
        parsed = _parse_headers_only(raw)
    elif parsed is None:
        try:
            parsed = _parse_stdlib(raw)
        except (Exception, RecursionError) as exc:
            defects.append(f"stdlib parser failed: {type(exc).__name__}")
            parsed = _parse_headers_only(raw)
    defects.extend(parsed.defects)

    # ids and threading
    message_ids = parse_msg_ids(parsed.header("message-id"))
    provider_message_id = message_ids[0][:1024] if message_ids else "sha256:" + hashlib.sha256(raw).hexdigest()
    refs = parse_msg_ids(" ".join(parsed.headers.get("references", [])))
    for rid in parse_msg_ids(parsed.header("in-reply-to")):
        if rid not in refs:
            refs.append(rid)
    if len(refs) > limits.max_references:
        defects.append(f"references-truncated: {len(refs)}")
        refs = refs[:1] + refs[-(limits.max_references - 1) :]
    thread_ref = refs[0] if refs else provider_message_id
    base_recipient, reply_token = split_reply_token(recipient)

    # contact
    addresses = parsed.reply_to + parsed.from_
    if not addresses and envelope_sender and "@" in envelope_sender:
        addresses = [(None, envelope_sender)]
    if not addresses:
        defects.append("no-sender")
        addresses = [(None, UNKNOWN_SENDER)]
    handles: list[ContactHandle] = []
    seen: set[str] = set()
    for _, addr in addresses:
        value = addr.strip()[:512]
        if value and value.lower() not in seen:
            seen.add(value.lower())
            handles.append(ContactHandle(kind="email", value=value))
    display_name = next((n for n, _ in addresses if n), None)
    contact = ContactIdentity(display_name=display_name[:256] if display_name else None, handles=tuple(handles))

    # bodies
    html = "\n".join(parsed.text_html).replace("\r\n", "\n") if parsed.text_html else None
    plain = "\n\n".join(t for t in parsed.text_plain if t.strip())
    html_quoted: str | None = None
    if not plain and html:
        try:
            plain, html_quoted = split_html(html[: limits.max_html_chars])
        except Exception as exc:
            defects.append(f"html-unreadable: {type(exc).__name__}")
    plain = plain.replace("\r\n", "\n")
    if len(plain) > limits.max_text_chars:
        defects.append("text-truncated")
        if store_content:
            pending.append(_body_blob("text", plain))
        plain = plain[: limits.max_text_chars]
    if html is not None and len(html) > limits.max_html_chars:
        defects.append("html-truncated")
        if store_content:
            pending.append(_body_blob("html", html))
        html = html[: limits.max_html_chars]
    languages = list(limits.reply_languages)
    language = _language(parsed.header("content-language"))
    if language and language not in languages:
        languages.append(language)
    if len(plain) <= limits.max_reply_parse_chars:
        text, quoted = split_reply(plain, languages)
    else:
        text, quoted = plain, None

    if html_quoted:
        quoted = f"{quoted}\n\n{html_quoted}" if quoted else html_quoted

    # attachments (and forwarded messages' text)
    attachments, forwarded = _attachments(parsed.parts, store_content, limits, defects, pending)
    if forwarded:
        quoted = "\n\n".join(x for x in (quoted, *forwarded) if x)

    subject = parsed.subject
    if subject is not None:
        subject = _CONTROL_RE.sub(" ", subject).strip()
        if len(subject) > limits.max_subject_chars:
            defects.append("subject-truncated")
            subject = subject[: limits.max_subject_chars]

    if len(defects) > limits.max_defects:
        defects = [*defects[: limits.max_defects - 1], f"... {len(defects) - limits.max_defects + 1} more"]
    metadata: dict[str, Any] = {"parser": parsed.parser}
    if provider_metadata:
        metadata.update(provider_metadata)
    record = InboundMessage(
        tenant_id=tenant_id,
        channel=Channel.EMAIL,
        provider=provider,
        provider_message_id=provider_message_id,
        thread_ref=thread_ref,
        references=tuple(refs),
        reply_token=reply_token,
        recipient=base_recipient,
        inbox=inbox,
        contact=contact,
        subject=subject or None,
        text=text,
        text_quoted=quoted,
        html=html,
        attachments=tuple(attachments),
        sent_at=parsed.sent_at,
        received_at=received_at or utcnow(),
        language=language,
        automated=_automated(parsed, parsed.header("content-type") or ""),
        parser_defects=tuple(d[:300] for d in defects),
        provider_metadata=metadata,
    )
    return Normalized(record, tuple(pending), _author(parsed))


_ADDR = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+"
_ONE_ADDRESS_RE = re.compile(rf"""[ \t]*(?:(?:"[^"\\\r\n<>,;:@]*"|[A-Za-z0-9 ._'-]*)[ \t]*<{_ADDR}>|{_ADDR})[ \t]*""")
"""A From value that plainly names one address (``Name <a@b>``, ``"Name" <a@b>``, ``a@b``):
it needs no full address-list parse to be counted."""


def _author(parsed: _Parsed) -> str | None:
    """The From address when there is exactly one From header naming exactly one address."""
    headers = parsed.headers.get("from", ())
    if len(parsed.from_) != 1 or len(headers) != 1:
        return None  # the fast parser keeps only the first address: count them in the header
    if (
        not _ONE_ADDRESS_RE.fullmatch(headers[0])
        and len([a for _, a in email.utils.getaddresses([headers[0]]) if a]) != 1
    ):
        return None
    return parsed.from_[0][1].strip() or None


def _body_blob(target: Literal["text", "html"], body: str) -> PendingBlob:
    content = body.encode("utf-8", "surrogatepass")
    ctype = "text/plain; charset=utf-8" if target == "text" else "text/html; charset=utf-8"
    return PendingBlob(target, 0, hashlib.sha256(content).hexdigest(), content, ctype)


_LANG_RE = re.compile(r"^\s*([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)*")


def _language(value: str | None) -> str | None:
    match = _LANG_RE.match(value or "")
    return match.group(1).lower() if match else None


def _attachments(
    parts: list[_Part],
    store_content: bool,
    limits: NormalizeLimits,
    defects: list[str],
    pending: list[PendingBlob],
) -> tuple[list[Attachment], list[str]]:
    out: list[Attachment] = []
    forwarded: list[str] = []
    stored_total = 0
    if len(parts) > limits.max_attachments:
        defects.append(f"attachments-truncated: {len(parts) - limits.max_attachments} not kept")
        parts = parts[: limits.max_attachments]
    for index, part in enumerate(parts):
        content = part.content
        digest = hashlib.sha256(content).hexdigest()
        if store_content:
            if len(content) > limits.max_attachment_bytes:
                defects.append(f"attachment-over-cap: {index}")
            elif stored_total + len(content) > limits.max_total_attachment_bytes:
                defects.append(f"attachments-total-over-cap: {index}")
            else:
                pending.append(PendingBlob("attachment", index, digest, content, part.content_type))
                stored_total += len(content)
        filename = _clean_filename(part.filename)
        if part.content_type == "message/rfc822":
            text, subject = _forwarded_text(content, limits)
            if text:
                forwarded.append(text)
            if filename is None and subject:
                filename = _clean_filename(f"{subject[:200]}.eml")
        disposition = (part.disposition or "").lower()
        out.append(
            Attachment(
                filename=filename,
                content_type=part.content_type[:255] or "application/octet-stream",
                size=len(content),
                sha256=digest,
                content_id=part.content_id[:998] if part.content_id else None,
                inline=disposition == "inline" or (not disposition and part.content_id is not None),
            )
        )
    return out, forwarded


def _forwarded_text(content: bytes, limits: NormalizeLimits) -> tuple[str | None, str | None]:
    """The text of an attached (forwarded) message, one level deep, for agents to read."""
    if not content or len(content) > limits.max_forward_bytes:
        return None, None
    try:
        inner = fast_mail_parser.parse_email(content)
        body = "\n\n".join(inner.text_plain).strip()
        if not body and inner.text_html:
            body = html_to_text("\n".join(inner.text_html))
        sender = inner.from_.display_name or inner.from_.address if inner.from_ else None
        subject = inner.subject or None
    except Exception:  # best effort only: the message itself is still attached
        return None, None
    header = "---------- Forwarded message ----------"
    lines = [header]
    if sender:
        lines.append(f"From: {sender}")
    if subject:
        lines.append(f"Subject: {subject}")
    body = body.replace("\r\n", "\n")[: limits.max_text_chars]
    return "\n".join(lines) + "\n\n" + body, subject
