"""Sender authentication: when may the From address be marked ``verified``?

The router links one customer's conversations across channels on verified handles only,
so a forged From must never come out verified. A From address is verified when one of
these vouches for its domain, *aligned* with it (the same domain, or with ``relaxed``
alignment the same organizational domain per the Public Suffix List, as DMARC does):

1. the provider's own verdict, on an authenticated webhook (:class:`ProviderVerdict`);
2. the ``Authentication-Results`` header of a relay the deployment trusts: only the
   topmost header whose authserv-id is in the allow list counts (a relay adds its own
   above what it received, and RFC 8601 has it remove forged ones that claim its id);
   any other ``Authentication-Results`` is the sender's say-so and is ignored;
3. a DKIM signature that verifies here (dkimpy), with ``d=`` aligned to the From domain.
   The public keys come from a :class:`KeyResolver` (DNS by default, cached), fetched
   asynchronously first, then handed to dkimpy, so nothing blocks the event loop and
   tests serve keys from a fake resolver.

Only a message with exactly one From address can be verified at all.
"""

from __future__ import annotations

import functools
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import authres  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]
import dkim  # type: ignore[import-untyped]
import dns.asyncresolver
import dns.exception
import dns.resolver
from dkim.util import InvalidTagValueList, parse_tag_value  # type: ignore[import-untyped]
from publicsuffixlist import PublicSuffixList

from switchboard.common.events import ContactHandle, InboundMessage
from switchboard.common.logging import get_logger

__all__ = [
    "DnsKeyResolver",
    "KeyLookupError",
    "KeyResolver",
    "ProviderVerdict",
    "SenderVerifier",
    "Verification",
    "VerificationPolicy",
    "aligned",
    "mark_verified",
]

log = get_logger(__name__)

Alignment = Literal["relaxed", "strict"]


class KeyLookupError(RuntimeError):
    """A temporary failure looking up a key (timeout, no answer from any server)."""


class KeyResolver(Protocol):
    """Looks up the TXT record of a DKIM key (``<selector>._domainkey.<domain>.``)."""

    async def txt(self, name: str) -> bytes | None: ...


class DnsKeyResolver:
    """TXT lookups with dnspython's asyncio resolver, cached by name (answers and "no such
    record" alike) for a bounded time and count; temporary failures are not cached."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 3.0,
        cache_seconds: float = 3600.0,
        negative_cache_seconds: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        resolver: dns.asyncresolver.Resolver | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        self._ttl = cache_seconds
        self._negative_ttl = negative_cache_seconds
        self._max = max_entries
        self._clock = clock
        self._resolver = resolver
        self._cache: OrderedDict[str, tuple[float, bytes | None]] = OrderedDict()

    async def txt(self, name: str) -> bytes | None:
        now = self._clock()
        hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        if self._resolver is None:
            self._resolver = dns.asyncresolver.Resolver()
        try:
            answer = await self._resolver.resolve(name, "TXT", lifetime=self._timeout)
            value: bytes | None = b"".join(answer[0].strings) if len(answer) else None
            ttl = self._ttl
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            value, ttl = None, self._negative_ttl
        except (dns.exception.DNSException, OSError) as exc:
            raise KeyLookupError(type(exc).__name__) from exc
        self._cache[name] = (now + ttl, value)
        self._cache.move_to_end(name)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return value


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list ships with the package: no download


def _clean_domain(domain: str) -> str:
    return domain.strip().strip(".").lower()


def aligned(identity_domain: str | None, author_domain: str | None, mode: Alignment = "relaxed") -> bool:
    """Whether an authenticated domain vouches for the author domain (DMARC identifier alignment)."""
    if not identity_domain or not author_domain:
        return False
    a, b = _clean_domain(identity_domain), _clean_domain(author_domain)
    if not a or not b:
        return False
    if mode == "strict" or a == b:
        return a == b
    org = _psl().privatesuffix(a)
    return org is not None and org == _psl().privatesuffix(b)


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return _clean_domain(address.rpartition("@")[2].strip("<> ")) or None


@dataclass(frozen=True, slots=True)
class ProviderVerdict:
    """What an inbound-email provider reported about a message it received.

    ``spf_pass_domain``: the envelope sender's domain when SPF passed; ``dkim_pass_domains``:
    domains of signatures the provider verified; ``dkim_author_aligned``: the provider
    itself says a signature of the From domain verified (Postmark's ``DKIM_VALID_AU``);
    ``dkim_pass_unattributed``: a signature verified, domain not said (Mailgun); it counts
    only when every signature on the message is aligned with the From domain.
    """

    source: str
    spf_pass_domain: str | None = None
    dkim_pass_domains: tuple[str, ...] = ()
    dkim_author_aligned: bool = False
    dkim_pass_unattributed: bool = False


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    dkim: bool = True
    trusted_authserv_ids: frozenset[str] = frozenset()
    provider_verdicts: bool = True
    alignment: Alignment = "relaxed"
    max_signatures: int = 5
    min_key_bits: int = 1024


@dataclass(frozen=True, slots=True)
class Verification:
    verified: bool
    method: str | None = None  # "provider:<source>", "authres:<authserv-id>", "dkim"
    domain: str | None = None

    @staticmethod
    def no() -> Verification:
        return _NOT_VERIFIED


_NOT_VERIFIED = Verification(False)
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_AUTHRES = authres.FeatureContext(authres.dmarc)


def _header_block(raw: bytes, limit: int = 65536) -> bytes:
    """The bytes before the first empty line (within the first ``limit``): every header any
    reader (ours, dkimpy) can find is in there, so the cheap "is there a DKIM-Signature or
    Authentication-Results at all" checks need not lower-case the whole body too."""
    end = raw.find(b"\n\r\n", 0, limit)  # CRLF mail: usually a few hundred bytes in
    if end >= 0:
        limit = end
    bare = raw.find(b"\n\n", 0, limit)  # bare-LF mail, searched only up to there
    return raw[: bare if bare >= 0 else limit]


def _headers(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields, in order, unfolded values (parsing stops at the first blank line)."""
    match = _HEAD_END_RE.search(raw)
    head = raw[: match.start()] if match else raw
    fields: list[tuple[bytes, bytes]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b" " + line.strip())
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.strip().lower(), value.strip()))
    return fields


class SenderVerifier:
    """Decides :class:`Verification` of a message's single From address under a policy."""

    def __init__(self, policy: VerificationPolicy, resolver: KeyResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver
        if policy.dkim and resolver is None:
            self._resolver = DnsKeyResolver()

    async def verify(self, raw: bytes, author: str | None, provider: ProviderVerdict | None = None) -> Verification:
        author_domain = _domain_of(author)
        if author_domain is None:
            return _NOT_VERIFIED
        policy = self.policy
        head = _header_block(raw).lower()
        signed = b"dkim-signature:" in head
        if provider is not None and policy.provider_verdicts:
            verdict = self._provider(provider, author_domain, raw if signed else b"")
            if verdict.verified:
                return verdict
        if policy.trusted_authserv_ids and b"authentication-results:" in head:
            verdict = self._authres(raw, author_domain)
            if verdict.verified:
                return verdict
        if policy.dkim and signed:
            return await self._dkim(raw, author_domain)
        return _NOT_VERIFIED

    # ------------------------------------------------------------------ provider

    def _provider(self, v: ProviderVerdict, author_domain: str, raw: bytes) -> Verification:
        mode = self.policy.alignment
        method = f"provider:{v.source}"
        if v.dkim_author_aligned:
            return Verification(True, method, author_domain)
        for domain in v.dkim_pass_domains:
            if aligned(domain, author_domain, mode):
                return Verification(True, method, _clean_domain(domain))
        if v.dkim_pass_unattributed and raw:
            domains = [_sig_domain(value) for name, value in _headers(raw) if name == b"dkim-signature"]
            if domains and all(aligned(d, author_domain, mode) for d in domains):
                return Verification(True, method, domains[0])
        if v.spf_pass_domain and aligned(v.spf_pass_domain, author_domain, mode):
            return Verification(True, method, _clean_domain(v.spf_pass_domain))
        return _NOT_VERIFIED

    # ------------------------------------------------------------------ Authentication-Results

    def _authres(self, raw: bytes, author_domain: str) -> Verification:
        mode = self.policy.alignment
        for name, value in _headers(raw):
            if name != b"authentication-results":
                continue
            try:
                header = _AUTHRES.parse("Authentication-Results: " + value.decode("utf-8", "replace"))
            except (authres.AuthResError, ValueError, IndexError):
                continue
            serv_id = (header.authserv_id or "").lower()
            if serv_id not in self.policy.trusted_authserv_ids:
                continue
            # the topmost header of a trusted relay is its own; it alone decides
            for result in header.results:
                if getattr(result, "result", None) != "pass":
                    continue
                props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in getattr(result, "properties", ())}
                method = getattr(result, "method", "")
                if method == "dmarc":
                    domain = props.get("header.from")
                elif method == "dkim":
                    domain = props.get("header.d") or _domain_of(props.get("header.i"))
                elif method == "spf":
                    mailfrom = props.get("smtp.mailfrom")
                    domain = _domain_of(mailfrom) if mailfrom and "@" in mailfrom else mailfrom
                else:
                    continue
                if domain and aligned(domain, author_domain, "strict" if method == "dmarc" else mode):
                    return Verification(True, f"authres:{serv_id}:{method}", _clean_domain(domain))
            return _NOT_VERIFIED
        return _NOT_VERIFIED

    # ------------------------------------------------------------------ DKIM

    async def _dkim(self, raw: bytes, author_domain: str) -> Verification:
        if self._resolver is None:
            return _NOT_VERIFIED
        try:
            checker = dkim.DKIM(raw, minkey=self.policy.min_key_bits)
            count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
        except Exception:  # dkimpy on a message it cannot read: simply not verified
            return _NOT_VERIFIED
        for idx in range(min(count, self.policy.max_signatures)):
            try:
                prep = checker.verify_headerprep(idx)
                if not prep:
                    continue
                sig = prep[0]
                domain = sig[b"d"].decode("ascii", "replace")
                if not aligned(domain, author_domain, self.policy.alignment):
                    continue  # never spend a lookup on a signature that could not vouch anyway
                name = b"%s._domainkey.%s." % (sig[b"s"], sig[b"d"])
                record = await self._resolver.txt(name.decode("ascii", "replace"))
                if record is None:
                    continue
                if checker.verify(idx, dnsfunc=_served(name, record)):
                    return Verification(True, "dkim", _clean_domain(domain))
            except KeyLookupError:
                log.info("dkim key lookup failed", domain=author_domain)
            except Exception as exc:  # malformed signatures and keys: this one does not verify
                log.debug("dkim signature does not verify", reason=type(exc).__name__)
        return _NOT_VERIFIED


def _served(name: bytes, record: bytes) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` that answers the one name already looked up."""

    def dnsfunc(query: bytes | str, timeout: float = 5) -> bytes | None:
        q = query if isinstance(query, bytes) else query.encode()
        return record if q.rstrip(b".").lower() == name.rstrip(b".").lower() else None

    return dnsfunc


def _sig_domain(value: bytes) -> str:
    try:
        domain: bytes = parse_tag_value(value).get(b"d", b"")
        return domain.decode("ascii", "replace").strip().lower()
    except (InvalidTagValueList, ValueError):
        return ""


def mark_verified(record: InboundMessage, author: str, verification: Verification) -> InboundMessage:
    """The record with the author's email handle marked verified (and how, in the metadata)."""
    if not verification.verified:
        return record
    key = author.strip().lower()
    handles: Sequence[ContactHandle] = record.contact.handles
    if not any(h.kind == "email" and h.value.lower() == key for h in handles):
        return record
    new_handles = tuple(
        h.model_copy(update={"verified": True}) if h.kind == "email" and h.value.lower() == key else h for h in handles
    )
    metadata = dict(record.provider_metadata)
    metadata["sender_verified_by"] = verification.method
    metadata["sender_verified_domain"] = verification.domain
    return record.model_copy(
        update={"contact": record.contact.model_copy(update={"handles": new_handles}), "provider_metadata": metadata}
    )
