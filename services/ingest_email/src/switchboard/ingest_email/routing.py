"""Which tenant (and inbox) a recipient address belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .normalize import split_reply_token

__all__ = ["InvalidAddress", "RecipientMap", "Route"]

_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ADDRESS_RE = re.compile(r"^[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}$")


class InvalidAddress(ValueError):
    """Not a mailbox address at all (SMTP 553)."""


@dataclass(frozen=True, slots=True)
class Route:
    tenant_id: str
    inbox: str | None = None


class RecipientMap:
    """Maps recipient addresses, or whole domains, to a route.

    Keys are either a full address (``support@acme.example``) or a domain written as
    ``@acme.example`` (or just ``acme.example``). A plus-suffix in the recipient
    (``support+token@``) is ignored for the lookup. Exact addresses win over domains.
    """

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self._addresses: dict[str, Route] = {}
        self._domains: dict[str, Route] = {}
        for key, route in routes.items():
            if not _TENANT_RE.match(route.tenant_id):
                raise ValueError(f"invalid tenant id {route.tenant_id!r} for recipient key {key!r}")
            key = key.strip().lower()
            if "@" in key.lstrip("@"):
                self._addresses[key] = route
            else:
                self._domains[key.lstrip("@")] = route

    def __len__(self) -> int:
        return len(self._addresses) + len(self._domains)

    def resolve(self, address: str) -> Route | None:
        """The route for a recipient, ``None`` when unknown; :class:`InvalidAddress` when malformed."""
        address = address.strip().strip("<>").strip()
        if not _ADDRESS_RE.match(address):
            raise InvalidAddress("not a mailbox address")
        base, _ = split_reply_token(address)
        base = (base or address).lower()
        route = self._addresses.get(base)
        if route is not None:
            return route
        domain = base.rpartition("@")[2]
        return self._domains.get(domain)
