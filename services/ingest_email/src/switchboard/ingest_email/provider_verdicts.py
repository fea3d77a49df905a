"""The inbound-email providers' own SPF/DKIM verdicts, read from their (authenticated) webhooks.

* Mailgun: form fields ``X-Mailgun-Spf`` (``Pass``, ``Fail``, ...) about the envelope
  sender, and ``X-Mailgun-Dkim-Check-Result`` (``Pass``/``Fail``), which does not say for
  which domain (so it counts only when every signature on the message is aligned);
* SendGrid Inbound Parse: fields ``SPF`` (``pass``, ...) and ``dkim``
  (``{@example.com : pass, @other.example : fail}``);
* Postmark: the first ``Received-SPF`` header (``Pass ... envelope-from=...``) and the
  first ``X-Spam-Tests`` (SpamAssassin's ``DKIM_VALID_AU``: a valid signature of the
  author's domain) in ``Headers``; the provider adds these above the sender's own headers.
"""

from __future__ import annotations

import re
from typing import Any

from .sender_auth import ProviderVerdict

__all__ = ["mailgun_verdict", "postmark_verdict", "sendgrid_verdict"]

_SENDGRID_DKIM_RE = re.compile(r"@([A-Za-z0-9.-]+)\s*:\s*([A-Za-z]+)")
_ENVELOPE_FROM_RE = re.compile(r"envelope-from=\"?<?([^\s;\">]+)", re.IGNORECASE)


def _domain(address: str | None) -> str | None:
    if not address:
        return None
    address = address.strip().strip("<>")
    if "@" not in address:
        return None
    return address.rpartition("@")[2].strip().lower() or None


def _passed(value: str | None) -> bool:
    return bool(value) and str(value).strip().lower().startswith("pass")


def mailgun_verdict(spf: str | None, dkim: str | None, envelope_sender: str | None) -> ProviderVerdict:
    return ProviderVerdict(
        source="mailgun",
        spf_pass_domain=_domain(envelope_sender) if _passed(spf) else None,
        dkim_pass_unattributed=_passed(dkim),
    )


def sendgrid_verdict(spf: str | None, dkim: str | None, envelope_sender: str | None) -> ProviderVerdict:
    domains = tuple(d.lower() for d, result in _SENDGRID_DKIM_RE.findall(dkim or "") if result.lower() == "pass")
    return ProviderVerdict(
        source="sendgrid",
        spf_pass_domain=_domain(envelope_sender) if _passed(spf) else None,
        dkim_pass_domains=domains,
    )


def postmark_verdict(headers: Any) -> ProviderVerdict:
    received_spf: str | None = None
    spam_tests: str | None = None
    if isinstance(headers, list):
        for item in headers:
            if not isinstance(item, dict):
                continue
            name, value = item.get("Name"), item.get("Value")
            if not isinstance(name, str) or not isinstance(value, str):
                continue
            lname = name.lower()
            if lname == "received-spf" and received_spf is None:
                received_spf = value
            elif lname == "x-spam-tests" and spam_tests is None:
                spam_tests = value
    spf_domain = None
    if _passed(received_spf):
        match = _ENVELOPE_FROM_RE.search(received_spf or "")
        spf_domain = _domain(match.group(1)) if match else None
    tests = {t.strip().upper() for t in (spam_tests or "").split(",")}
    return ProviderVerdict(
        source="postmark",
        spf_pass_domain=spf_domain,
        dkim_author_aligned="DKIM_VALID_AU" in tests,
    )
