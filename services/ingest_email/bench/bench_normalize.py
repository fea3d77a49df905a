"""Normalization cost per message: the stdlib path vs the combined (fast-mail-parser first) path.

Run: ``.venv/bin/python services/ingest_email/bench/bench_normalize.py [--seconds 2]``

The message is a typical ~10 KB ``multipart/mixed``: a ``multipart/alternative`` (text and
HTML) plus a small PNG attachment. A second row uses a reply with quoted history, which
also pays for the reply splitter (mail-parser-reply). Both paths produce the full
``InboundMessage``; the parse-only rows show what the parsers alone cost.
"""

from __future__ import annotations

import argparse
import base64
import email.policy
import os
import time
from collections.abc import Callable
from email.parser import BytesParser

import fast_mail_parser

from switchboard.ingest_email.normalize import normalize_email

PARAGRAPH = (
    "Hello, I ordered a pair of running shoes last week (order 10293) and the parcel arrived "
    "today, but the left shoe is a size 42 and the right one a size 43. Could you send me a "
    "replacement or tell me how to return them? I have attached a photo of the labels. "
)


def typical_message(*, reply: bool = False) -> bytes:
    text = "\n\n".join([PARAGRAPH] * 15)
    if reply:  # a short answer above a long quoted history, as replies usually are
        history = "\n\n".join(["Thanks for your order!", *[PARAGRAPH] * 12])
        quoted = "\n".join("> " + line for line in history.splitlines())
        text = "\n\n".join([PARAGRAPH] * 2)
        text += "\n\nOn Mon, Nov 16, 2026 at 4:02 PM Shop Support <support@shop.example> wrote:\n" + quoted
    html = "<html><body>" + "".join(f"<p>{PARAGRAPH}</p>" for _ in range(15)) + "</body></html>"
    png = base64.encodebytes(os.urandom(900)).decode()
    return (
        "From: Jane Doe <jane@example.org>\r\n"
        "To: support+t0k3n@shop.example\r\n"
        "Subject: Wrong shoe sizes in order 10293\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        "Message-ID: <bench-1@example.org>\r\n"
        "In-Reply-To: <ticket-1@shop.example>\r\n"
        "References: <ticket-1@shop.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="mixed"\r\n\r\n'
        "--mixed\r\n"
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text.replace("\n", "\r\n") + "\r\n"
        "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n"
        "--alt--\r\n"
        "--mixed\r\n"
        'Content-Type: image/png; name="labels.png"\r\n'
        'Content-Disposition: attachment; filename="labels.png"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + png + "--mixed--\r\n"
    ).encode()


def per_message(fn: Callable[[], object], seconds: float) -> float:
    for _ in range(20):  # warm up
        fn()
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return (now - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each measurement")
    args = parser.parse_args()

    rows = []
    for label, raw in (("typical", typical_message()), ("reply with quote", typical_message(reply=True))):

        def stdlib_path(raw: bytes = raw) -> object:
            return normalize_email(raw, tenant_id="bench", provider="bench", parser="stdlib")

        def combined_path(raw: bytes = raw) -> object:
            return normalize_email(raw, tenant_id="bench", provider="bench")

        stdlib = per_message(stdlib_path, args.seconds)
        combined = per_message(combined_path, args.seconds)
        rows.append((f"normalize_email, {label} ({len(raw) / 1024:.1f} KB)", stdlib, combined))

    raw = typical_message()
    policy = email.policy.default
    parse_stdlib = per_message(lambda: list(BytesParser(policy=policy).parsebytes(raw).walk()), args.seconds)
    parse_fast = per_message(lambda: fast_mail_parser.parse_email(raw), args.seconds)
    rows.append(("parse only (no normalization)", parse_stdlib, parse_fast))

    print(f"{'per message':<52} {'stdlib path':>14} {'combined path':>14} {'speed-up':>9}")
    for name, slow, fast in rows:
        print(f"{name:<52} {slow * 1e6:>11.1f} us {fast * 1e6:>11.1f} us {slow / fast:>8.1f}x")
    print()
    for name, slow, fast in rows:
        print(f"{name:<52} {1 / slow:>10.0f}/s {1 / fast:>12.0f}/s   (messages per second, one core)")


if __name__ == "__main__":
    main()
