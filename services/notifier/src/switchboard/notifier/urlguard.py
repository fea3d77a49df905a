"""Which URLs the notifier may post to: http(s) only, allowed hosts only, public addresses only.

:class:`UrlPolicy` checks a URL before a send (scheme, host allow-list, every address the
host resolves to). :class:`GuardedResolver` applies the same address rule inside the HTTP
client's connector, so a name that re-resolves to a private address between the check
and the connection (DNS rebinding) is refused too.

:class:`UrlChecker` is the check as the sinks run it before every send: the same decisions,
remembered (see there for why that stays safe).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[str]]]


class UrlRefused(OSError):
    """A URL the policy does not allow; the reason is safe to report."""


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """``allowed_hosts``: exact host names or ``*.example.com`` (any sub-domain); ``*`` allows any host.

    ``allow_private`` lets loopback, private, link-local and other non-global addresses
    through; it is meant for tests and for a helpdesk deliberately on the internal network.
    """

    allowed_hosts: tuple[str, ...] = ()
    allow_private: bool = False

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.allowed_hosts:
            pattern = pattern.lower().rstrip(".")
            if pattern == "*" or pattern == host:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        return False

    def address_allowed(self, address: str) -> bool:
        try:
            ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if self.allow_private:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_global and not ip.is_multicast

    def check_url(self, url: str) -> URL:
        """Scheme and host checks (no resolution); raises :class:`UrlRefused`."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise UrlRefused("not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise UrlRefused(f"scheme {parsed.scheme or '(none)'!r} is not http or https")
        host = parsed.raw_host
        if not host:
            raise UrlRefused("URL has no host")
        if parsed.user is not None or parsed.password is not None:
            raise UrlRefused("URL carries credentials")
        if not self.host_allowed(host):
            raise UrlRefused(f"host {host!r} is not in the allowed hosts")
        return parsed

    async def check(self, url: str, resolve: Resolve | None = None) -> URL:
        """Full check: scheme, host allow-list and every address the host resolves to."""
        parsed = self.check_url(url)
        host = parsed.raw_host
        assert host is not None
        try:
            addresses = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            addresses = await (resolve or system_resolve)(host, parsed.port or 0)
        self.check_addresses(host, addresses)
        return parsed

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        found = list(addresses)
        if not found:
            raise UrlRefused(f"host {host!r} did not resolve")
        bad = [a for a in found if not self.address_allowed(a)]
        if bad:
            raise UrlRefused(f"host {host!r} resolves to a non-public address ({bad[0]})")


async def system_resolve(host: str, port: int) -> list[str]:
    resolver = DefaultResolver()
    try:
        results = await resolver.resolve(host, port, socket.AF_UNSPEC)
    except OSError as exc:
        raise UrlRefused(f"host {host!r} did not resolve: {exc.strerror or type(exc).__name__}") from None
    finally:
        await resolver.close()
    return [r["host"] for r in results]


@dataclass(frozen=True, slots=True)
class _UrlDecision:
    """What :meth:`UrlPolicy.check` decides from the URL alone."""

    url: URL | None
    refused: str | None = None
    name: str | None = None
    """The host name still to resolve; None when the host is an IP literal (fully decided)."""
    port: int = 0


class UrlChecker:
    """:meth:`UrlPolicy.check` for the send path, with its decisions remembered.

    - Scheme, host allow-list, credentials and, for an IP-literal host, its address depend
      on the URL string alone (the policy is immutable), so the decision, refusals
      included, is remembered per URL (at most ``max_entries``; the memory is dropped
      whole when full).
    - A host *name* is resolved and its addresses checked at most once per ``ttl`` seconds
      per (name, port); only an allowed resolution is remembered, a refusal is looked up
      again next time. The default TTL is that of aiohttp's own DNS cache, so this never
      trusts a resolution longer than the connection pool does. The address rule that
      binds is the connector's :class:`GuardedResolver`, which checks every resolution
      the connection actually uses; this pre-check gives a clear, early refusal.
    """

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        resolve: Resolve | None = None,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("a URL checker needs ttl >= 0 and max_entries >= 1")
        self.policy = policy
        self._resolve = resolve
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._urls: dict[str, _UrlDecision] = {}
        self._names: dict[tuple[str, int], float] = {}  # (name, port) -> when its allowed resolution expires

    async def check(self, url: str) -> URL:
        """As :meth:`UrlPolicy.check`: the parsed URL, or :class:`UrlRefused` with the reason."""
        decision = self._urls.get(url)
        if decision is None:
            decision = self._decide(url)
            if len(self._urls) >= self._max:
                self._urls.clear()
            self._urls[url] = decision
        if decision.refused is not None:
            raise UrlRefused(decision.refused)
        assert decision.url is not None
        if decision.name is not None:
            await self._check_name(decision.name, decision.port)
        return decision.url

    def _decide(self, url: str) -> _UrlDecision:
        try:
            parsed = self.policy.check_url(url)
        except UrlRefused as exc:
            return _UrlDecision(None, str(exc))
        host = parsed.raw_host
        assert host is not None
        try:
            literal = str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            return _UrlDecision(parsed, name=host, port=parsed.port or 0)
        try:
            self.policy.check_addresses(host, [literal])
        except UrlRefused as exc:
            return _UrlDecision(None, str(exc))
        return _UrlDecision(parsed)

    async def _check_name(self, name: str, port: int) -> None:
        key = (name, port)
        expires = self._names.get(key)
        if expires is not None and self._clock() < expires:
            return
        addresses = await (self._resolve or system_resolve)(name, port)
        self.policy.check_addresses(name, addresses)  # raises UrlRefused; a refusal is not remembered
        if len(self._names) >= self._max:
            self._names.clear()
        self._names[key] = self._clock() + self._ttl


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses a host when any of its addresses is not allowed."""

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self._policy.check_addresses(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()
