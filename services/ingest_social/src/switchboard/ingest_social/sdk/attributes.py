"""Contact attributes: what an adapter may attach to ``InboundMessage.contact.attributes``.

Routing rules match on them (``match: {attributes: {tier: [gold, platinum]}}``), so they are
small, flat facts about the customer: a bounded number of keys, each a short name, each value
a JSON scalar (string, number, boolean, null) or a list of scalars. Anything else is refused
with :class:`InvalidContactAttributes` (422 ``invalid_contact_attributes``): an adapter never
publishes a contact the router could choke on, and never silently drops what it was sent.

Reasons name the offending key (once it is a valid name) and the rule it broke, never a value:
attribute values may be personal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import orjson
from pydantic import JsonValue

from switchboard.ingest_social.sdk.errors import InvalidContactAttributes

__all__ = [
    "ALLOWED_ATTRIBUTES_OPTION",
    "DEFAULT_ATTRIBUTE_LIMITS",
    "AttributeLimits",
    "allowed_attribute_keys",
    "validate_contact_attributes",
]

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_INT_BOUND = 2**63


@dataclass(frozen=True, slots=True)
class AttributeLimits:
    """The bounds :func:`validate_contact_attributes` enforces (an adapter may set tighter ones)."""

    max_keys: int = 32
    max_key_length: int = 64
    max_string_length: int = 256
    max_list_items: int = 32
    max_total_bytes: int = 4096
    """The attributes encoded as compact JSON."""


DEFAULT_ATTRIBUTE_LIMITS = AttributeLimits()

ALLOWED_ATTRIBUTES_OPTION = "allowed_contact_attributes"
"""The tenant option (``options: {allowed_contact_attributes: [tier, plan]}`` in the channels file)
that limits which attribute keys the tenant's requests may set; absent, any valid key may."""


def allowed_attribute_keys(options: Mapping[str, JsonValue]) -> frozenset[str] | None:
    """The tenant's allow-list from its options, ``None`` when it has none; ``ValueError`` when malformed."""
    value = options.get(ALLOWED_ATTRIBUTES_OPTION)
    if value is None:
        return None
    problem = f"option {ALLOWED_ATTRIBUTES_OPTION!r} must be a list of attribute names"
    if not isinstance(value, list):
        raise ValueError(problem)
    keys: set[str] = set()
    for key in value:
        if not isinstance(key, str) or not _KEY_RE.match(key) or len(key) > DEFAULT_ATTRIBUTE_LIMITS.max_key_length:
            raise ValueError(problem)
        keys.add(key)
    return frozenset(keys)


Scalar = str | int | float | bool | None


def validate_contact_attributes(
    attributes: Mapping[str, object] | None,
    limits: AttributeLimits = DEFAULT_ATTRIBUTE_LIMITS,
    *,
    allowed: Collection[str] | None = None,
) -> dict[str, JsonValue]:
    """A plain copy of ``attributes`` once every bound holds, else :class:`InvalidContactAttributes`.

    ``allowed``, when given, is the tenant's allow-list of keys (``allowed_contact_attributes``):
    any other key is refused too.
    """
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidContactAttributes("contact attributes must be a JSON object")
    if not attributes:
        return {}
    if len(attributes) > limits.max_keys:
        raise InvalidContactAttributes(
            f"contact attributes: {len(attributes)} keys, at most {limits.max_keys} are allowed"
        )
    out: dict[str, JsonValue] = {}
    for position, (key, value) in enumerate(attributes.items(), start=1):
        if not isinstance(key, str) or not (0 < len(key) <= limits.max_key_length) or not _KEY_RE.match(key):
            raise InvalidContactAttributes(
                f"contact attributes: key #{position} is not a valid name (1 to {limits.max_key_length} letters, "
                "digits, '_', '-', '.' or ':', starting with a letter or '_')"
            )
        if allowed is not None and key not in allowed:
            raise InvalidContactAttributes(
                f"contact attributes: {key!r} is not allowed for this tenant (allowed: {sorted(allowed)})"
            )
        if isinstance(value, list | tuple):
            if len(value) > limits.max_list_items:
                raise InvalidContactAttributes(
                    f"contact attributes: {key!r} is a list of {len(value)} items, "
                    f"at most {limits.max_list_items} are allowed"
                )
            items: list[JsonValue] = [_scalar(key, item, limits, in_list=True) for item in value]
            out[key] = items
        else:
            out[key] = _scalar(key, value, limits, in_list=False)
    size = len(orjson.dumps(out))
    if size > limits.max_total_bytes:
        raise InvalidContactAttributes(
            f"contact attributes: {size} bytes as JSON, at most {limits.max_total_bytes} are allowed"
        )
    return out


def _scalar(key: str, value: object, limits: AttributeLimits, *, in_list: bool) -> Scalar:
    where = f"an item of {key!r}" if in_list else repr(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            raise InvalidContactAttributes(
                f"contact attributes: {where} is a string of {len(value)} characters, "
                f"at most {limits.max_string_length} are allowed"
            )
        return value
    if isinstance(value, int):
        if not -_INT_BOUND <= value < _INT_BOUND:
            raise InvalidContactAttributes(f"contact attributes: {where} is an integer outside 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidContactAttributes(f"contact attributes: {where} is not a finite number")
        return value
    if isinstance(value, list | tuple):
        kind = "a list"
    elif isinstance(value, Mapping):
        kind = "a JSON object"
    else:
        kind = "not a JSON value"
    raise InvalidContactAttributes(
        f"contact attributes: {where} is {kind}; values are strings, numbers, booleans, null "
        "or lists of those (one level)"
    )
