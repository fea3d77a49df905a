"""Posted forms (``multipart/form-data`` and urlencoded), read as raw bytes with the size cap
applied while the body streams in.

Multipart bodies go through ``python-multipart``'s streaming parser (the one Starlette
uses): aiohttp's ``request.multipart()``/``request.post()`` spend 100 to 150 microseconds of
CPU on every part's ``Content-Disposition`` (its parser rebuilds an escaping regex on each
call), so a provider's form of five to twenty small fields cost more than everything else
the service does with the message. The simple ``form-data; name="x"; filename="y"``
headers every provider sends are read here directly; anything else (RFC 5987
``filename*``, escapes, unquoted tokens) goes to aiohttp's own parser, so the names come
out exactly as before.

A preamble before the first delimiter is skipped. Per part, ``Content-Transfer-Encoding``
(base64, quoted-printable) and ``Content-Encoding`` (gzip, deflate, with the output
capped) are undone as aiohttp's reader did; a nested multipart part, an unknown encoding
(a 500 from aiohttp's reader before) or a truncated body is a :class:`FormError` (400),
more than :data:`MAX_FORM_PARTS` parts too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import urllib.parse
import zlib
from collections.abc import AsyncIterable

from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["MAX_FORM_PARTS", "Form", "FormError", "parse_disposition", "read_form"]

MAX_FORM_PARTS = 1000
"""Parts in one form at most: providers post a few dozen fields and up to 100 attachments."""


class FormError(Exception):
    """The form cannot be read: ``status`` (400 or 413), ``code`` and ``detail`` for the JSON refusal."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def too_large(max_bytes: int) -> FormError:
    return FormError(413, "too_large", f"request body is over {max_bytes} bytes")


def _malformed(detail: str) -> FormError:
    return FormError(400, "malformed_form", f"form data could not be read: {detail}")


class Form:
    """A posted form: fields as raw bytes, files as (field, filename, content type, bytes).

    Field values are never decoded here: providers post text in non-UTF-8 charsets.
    """

    def __init__(self) -> None:
        self.fields: dict[str, bytes] = {}
        self.files: list[tuple[str, str | None, str, bytes]] = []

    def text(self, name: str, charset: str | None = None) -> str | None:
        value = self.fields.get(name)
        if not value:
            return None
        try:
            return value.decode(charset or "utf-8", "replace")
        except LookupError:  # an unknown charset label
            return value.decode("utf-8", "replace")


def parse_disposition(header: str | None) -> tuple[str | None, str | None]:
    """(name, filename) of a form part's ``Content-Disposition``, as aiohttp reads them.

    The plain quoted form providers send is read here; any other shape is left to
    aiohttp's parser, so both give the same answer for every header. The answer is a pure
    function of the header, so short headers (a provider posts the same few on every
    request) are answered from a bounded cache.
    """
    if header is not None and len(header) <= _CACHED_HEADER_CHARS:
        return _cached_disposition(header)
    return _disposition(header)


_CACHED_HEADER_CHARS = 256


def _disposition(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    disptype, *items = header.split(";")
    params: dict[str, str] = {}
    if disptype.strip().lower() == "form-data":
        for item in items:
            key, eq, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if (
                not eq
                or key not in ("name", "filename")
                or key in params
                or len(value) < 2
                or value[0] != '"'
                or value[-1] != '"'
                or '"' in (inner := value[1:-1])
                or "\\" in inner
                or inner.startswith("/")
            ):
                break
            params[key] = inner
        else:
            return params.get("name"), params.get("filename")
    _, full = parse_content_disposition(header)
    return content_disposition_filename(full, "name"), content_disposition_filename(full, "filename")


_cached_disposition = functools.lru_cache(maxsize=1024)(_disposition)


def _decode_part(data: bytes, headers: dict[str, str], max_bytes: int) -> bytes:
    cte = headers.get("content-transfer-encoding", "").strip().lower()
    if cte == "base64":
        data = base64.b64decode(data)
    elif cte == "quoted-printable":
        data = binascii.a2b_qp(data)
    elif cte not in ("", "binary", "8bit", "7bit"):
        raise _malformed("unknown content transfer encoding")
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "deflate"):
        raise _malformed("unknown content encoding")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else -zlib.MAX_WBITS)
    out = inflater.decompress(data, max_bytes + 1)
    if len(out) > max_bytes:
        raise too_large(max_bytes)
    return out


class _MultipartForm:
    """Collects the parts ``python-multipart`` reports through its callbacks.

    It holds no reference to the parser (the parser holds its callbacks): no reference
    cycle, so each request's parser is freed at once instead of by the cyclic collector.
    """

    def __init__(self, max_bytes: int) -> None:
        self.form = Form()
        self.complete = False
        self._max_bytes = max_bytes
        self._parts = 0
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._chunks: list[bytes] = []

    def parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_FORM_PARTS:
            raise FormError(400, "too_many_fields", f"a form may hold at most {MAX_FORM_PARTS} parts")
        self._headers = {}
        self._chunks = []

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers.setdefault(name, self._value.decode("utf-8", "surrogateescape").strip())
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        if self._headers.get("content-type", "").lstrip().lower().startswith("multipart/"):
            raise FormError(400, "malformed_form", "nested multipart in a form field")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._chunks.append(data[start:end])

    def _on_part_end(self) -> None:
        name, filename = parse_disposition(self._headers.get("content-disposition"))
        data = _decode_part(b"".join(self._chunks), self._headers, self._max_bytes)
        self._chunks = []
        if filename is not None:
            ctype = self._headers.get("content-type", "application/octet-stream")
            self.form.files.append((name or "", filename or None, ctype, data))
        elif name:
            self.form.fields[name] = data

    def _on_end(self) -> None:
        self.complete = True


class _Preamble:
    """Skips what comes before the first delimiter line (RFC 2046 allows a preamble; the
    parser expects the delimiter first)."""

    def __init__(self, boundary: bytes) -> None:
        self.buffer = bytearray()
        self._delimiter = b"--" + boundary

    def feed(self, chunk: bytes) -> bytes | None:
        """The body from its first delimiter on, once it has arrived; ``None`` until then."""
        if not self.buffer and chunk.startswith(self._delimiter):
            return chunk  # the usual case: no preamble, nothing copied
        searched = max(len(self.buffer) - len(self._delimiter) - 2, 0)
        self.buffer += chunk
        if self.buffer.startswith(self._delimiter):
            return bytes(self.buffer)
        at = self.buffer.find(b"\r\n" + self._delimiter, searched)
        return bytes(self.buffer[at + 2 :]) if at >= 0 else None


async def read_form(content_type: str, body: AsyncIterable[bytes], max_bytes: int) -> Form:
    """The form in ``body`` (the request's chunks), read as it streams in.

    Raises :class:`FormError`: 413 once more than ``max_bytes`` arrived, 400 when the
    body is not a readable form of ``content_type``.
    """
    media_type, params = parse_options_header(content_type)
    total = 0
    if media_type == b"application/x-www-form-urlencoded":
        chunks = []
        async for chunk in body:
            total += len(chunk)
            if total > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
        form = Form()
        text = b"".join(chunks).decode("latin-1")  # latin-1 both ways: the bytes come back as sent
        for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="latin-1"):
            form.fields[name] = value.encode("latin-1")
        return form
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise _malformed("no multipart boundary")
    reader = _MultipartForm(max_bytes)
    preamble: _Preamble | None = _Preamble(boundary)
    try:
        parser = reader.parser(boundary)  # refuses a boundary over 256 bytes (RFC 2046: 70)
        async for chunk in body:
            total += len(chunk)
            if total > max_bytes:
                raise too_large(max_bytes)
            if preamble is not None:
                first = preamble.feed(chunk)
                if first is None:
                    continue
                chunk, preamble = first, None
            parser.write(chunk)
        if preamble is not None:
            parser.write(bytes(preamble.buffer))  # no delimiter anywhere: the parser says what is wrong
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:  # binascii.Error is a ValueError
        raise _malformed(type(exc).__name__) from None
    if not reader.complete:
        raise _malformed("the body ended before the closing boundary")
    return reader.form
