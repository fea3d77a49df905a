"""Form reading (python-multipart underneath): fields, files, encodings, caps and refusals.

Unit tests feed ``read_form`` the body in chunks of every size; the webhook tests in
``test_webhooks.py`` cover the same reader behind real HTTP.
"""

from __future__ import annotations

import base64
import gzip
import urllib.parse
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from switchboard.ingest_email.forms import MAX_FORM_PARTS, Form, FormError, parse_disposition, read_form

MULTIPART = "multipart/form-data; boundary=XyZ"


def part(headers: str, data: bytes) -> bytes:
    return b"--XyZ\r\n" + headers.encode() + b"\r\n\r\n" + data + b"\r\n"


def form_body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--XyZ--\r\n"


async def chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def read(body: bytes, *, size: int = 65536, content_type: str = MULTIPART, max_bytes: int = 1 << 20) -> Form:
    return await read_form(content_type, chunks(body, size), max_bytes)


async def refusal(body: bytes, **kwargs: object) -> FormError:
    with pytest.raises(FormError) as info:
        await read(body, **kwargs)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("size", [1, 7, 64, 65536])
async def test_fields_and_files_whatever_the_chunking(size: int) -> None:
    body = form_body(
        part('Content-Disposition: form-data; name="token"', b"abc"),
        part('Content-Disposition: form-data; name="body-mime"', b"From: a@x.example\r\n\r\n--XyZ-not-a-boundary\r\n"),
        part(
            'Content-Disposition: form-data; name="attachment-1"; filename="factura.pdf"\r\n'
            "Content-Type: application/pdf",
            b"%PDF\r\n\x00\xff",
        ),
        part('Content-Disposition: form-data; name="empty"', b""),
        part('Content-Disposition: form-data; name="noname-file"; filename=""', b"x"),
        part("Content-Type: text/plain", b"a part without a name is ignored"),
    )
    form = await read(body, size=size)
    assert form.fields == {
        "token": b"abc",
        "body-mime": b"From: a@x.example\r\n\r\n--XyZ-not-a-boundary\r\n",
        "empty": b"",
    }
    assert form.files == [
        ("attachment-1", "factura.pdf", "application/pdf", b"%PDF\r\n\x00\xff"),
        ("noname-file", None, "application/octet-stream", b"x"),
    ]
    assert form.text("token") == "abc"
    assert form.text("empty") is None


async def test_field_bytes_are_kept_as_sent() -> None:
    form = await read(form_body(part('Content-Disposition: form-data; name="text"', "llegó".encode("latin-1"))))
    assert form.fields["text"] == b"lleg\xf3"
    assert form.text("text", "iso-8859-1") == "llegó"
    assert form.text("text", "no-such-charset") == "lleg\ufffd"


@pytest.mark.parametrize(
    "header",
    [
        'form-data; name="email"',
        'form-data; name="attachment-1"; filename="factura.pdf"',
        'form-data;name="a";filename="b c.txt"',
        'FORM-DATA; NAME="x"',
        'form-data; name="naïve"; filename="résumé.pdf"',
        'form-data; name="x"; filename=""',
        "form-data; name=token",
        "form-data; name=\"x\"; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
        'form-data; name="x"; filename="/etc/passwd"',
        'form-data; name="x"; filename="a\\"b.txt"',
        'form-data; name="x"; filename="a;b.txt"',
        'attachment; filename="x.txt"',
        'form-data; name="long"; filename="' + "a" * 300 + '.pdf"',  # past the cache's length limit
        "",
    ],
)
def test_disposition_reads_as_aiohttp_does(header: str) -> None:
    _, params = parse_content_disposition(header)
    expected = (content_disposition_filename(params, "name"), content_disposition_filename(params, "filename"))
    assert parse_disposition(header) == expected
    assert parse_disposition(header) == expected  # the second time from the cache, same answer


def test_disposition_fast_path_values() -> None:
    assert parse_disposition('form-data; name="attachment-1"; filename="factura.pdf"') == (
        "attachment-1",
        "factura.pdf",
    )
    assert parse_disposition(None) == (None, None)


async def test_transfer_and_content_encodings_are_undone() -> None:
    body = form_body(
        part(
            'Content-Disposition: form-data; name="b64"\r\nContent-Transfer-Encoding: base64',
            base64.b64encode(b"hello \xff"),
        ),
        part('Content-Disposition: form-data; name="qp"\r\nContent-Transfer-Encoding: quoted-printable', b"caf=C3=A9"),
        part('Content-Disposition: form-data; name="gz"\r\nContent-Encoding: gzip', gzip.compress(b"zipped")),
        part('Content-Disposition: form-data; name="raw"\r\nContent-Encoding: deflate', zlib.compress(b"deflated")[2:]),
    )
    form = await read(body, size=5)
    assert form.fields == {"b64": b"hello \xff", "qp": "café".encode(), "gz": b"zipped", "raw": b"deflated"}


async def test_a_compressed_part_is_capped_after_inflating() -> None:
    bomb = gzip.compress(b"\0" * 100_000)
    error = await refusal(
        form_body(part('Content-Disposition: form-data; name="gz"\r\nContent-Encoding: gzip', bomb)), max_bytes=4096
    )
    assert (error.status, error.code) == (413, "too_large")


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (
            form_body(part('Content-Disposition: form-data; name="x"\r\nContent-Transfer-Encoding: x-uue', b"x")),
            MULTIPART,
            "unknown content transfer encoding",
        ),
        (
            form_body(part('Content-Disposition: form-data; name="x"\r\nContent-Encoding: br', b"x")),
            MULTIPART,
            "unknown content encoding",
        ),
        (
            form_body(part('Content-Disposition: form-data; name="x"\r\nContent-Transfer-Encoding: base64', b"abc")),
            MULTIPART,
            "Error",
        ),
        (part('Content-Disposition: form-data; name="x"', b"no closing boundary"), MULTIPART, "closing boundary"),
        (b"", MULTIPART, "closing boundary"),
        (form_body(part('Content-Disposition: form-data; name="x"', b"x")), "multipart/form-data", "boundary"),
        (b"not a form at all\r\n", MULTIPART, "Error"),
        (form_body(part('Content-Disposition: form-data; name="x"', b"x")), f"{MULTIPART}{'x' * 300}", "Error"),
        (form_body(part('Content-Disposition: form-data; name="x"\r\nno colon', b"x")), MULTIPART, "Error"),
    ],
)
async def test_unreadable_forms_are_400(body: bytes, content_type: str, detail: str) -> None:
    error = await refusal(body, content_type=content_type)
    assert (error.status, error.code) == (400, "malformed_form")
    assert detail in error.detail


async def test_nested_multipart_is_refused() -> None:
    inner = b"--in\r\nContent-Type: text/plain\r\n\r\nx\r\n--in--\r\n"
    body = form_body(
        part('Content-Disposition: form-data; name="x"\r\nContent-Type: multipart/mixed; boundary=in', inner)
    )
    error = await refusal(body)
    assert (error.status, error.code, error.detail) == (400, "malformed_form", "nested multipart in a form field")


async def test_too_many_parts_is_refused() -> None:
    body = form_body(*[part(f'Content-Disposition: form-data; name="f{i}"', b"") for i in range(MAX_FORM_PARTS + 1)])
    error = await refusal(body, max_bytes=len(body))
    assert (error.status, error.code) == (400, "too_many_fields")
    form = await read(form_body(*[part(f'Content-Disposition: form-data; name="f{i}"', b"1") for i in range(50)]))
    assert len(form.fields) == 50


@pytest.mark.parametrize("content_type", [MULTIPART, "application/x-www-form-urlencoded"])
async def test_over_the_cap_is_413_while_streaming(content_type: str) -> None:
    body = form_body(part('Content-Disposition: form-data; name="x"', b"y" * 5000))
    error = await refusal(body, size=1000, content_type=content_type, max_bytes=4096)
    assert (error.status, error.code) == (413, "too_large")
    form = await read(body, size=1000, max_bytes=len(body))
    assert form.fields["x"] == b"y" * 5000


async def test_urlencoded_fields_keep_their_bytes() -> None:
    mime = "Subject: 50 €\r\n\r\ncaf\xe9".encode("utf-8", "surrogateescape") + b"\xff"
    body = urllib.parse.urlencode({"body-mime": mime, "token": "t 1", "empty": ""}).encode()
    form = await read(body, size=3, content_type="application/x-www-form-urlencoded; charset=utf-8")
    assert form.fields == {"body-mime": mime, "token": b"t 1", "empty": b""}
    assert form.files == []


@pytest.mark.parametrize("size", [1, 5, 65536])
async def test_a_preamble_is_skipped(size: int) -> None:
    body = b"This is a preamble; --XyZ inside it is not a delimiter.\r\n" + form_body(
        part('Content-Disposition: form-data; name="x"', b"1")
    )
    form = await read(body, size=size)
    assert form.fields == {"x": b"1"}


async def test_a_body_without_any_delimiter_is_400_even_when_long() -> None:
    error = await refusal(b"no delimiter here\r\n" * 5000, size=4096, max_bytes=1 << 20)
    assert (error.status, error.code) == (400, "malformed_form")
