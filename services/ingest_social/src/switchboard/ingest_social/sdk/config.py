"""Tenant configuration: which adapters are enabled and each tenant's secrets, per adapter.

Read from a YAML (or JSON) file named by ``SWITCHBOARD_INGEST_SOCIAL_CHANNELS_FILE``::

    adapters:
      messenger:
        tenants:
          acme:
            secrets: {app_secret: "...", verify_token: "..."}
      custom:
        tenants:
          acme:
            secrets: {signing_secret: ["whsec_new...", "whsec_old..."]}   # rotation
            inbox: partners
            options: {provider: acme-crm}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, StringConstraints, field_validator

from switchboard.ingest_social.sdk.errors import ConfigError

__all__ = ["AdapterConfig", "ChannelsConfig", "TenantConfig", "load_channels_config"]

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TenantKey = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]


class TenantConfig(BaseModel):
    """One tenant's settings for one adapter. A secret may be a list (several valid during rotation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secrets: dict[str, tuple[SecretStr, ...]] = Field(default_factory=dict)
    inbox: str | None = Field(default=None, description="Routing hint copied into InboundMessage.inbox")
    options: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("secrets", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (v if isinstance(v, list | tuple) else [v]) for k, v in value.items()}
        return value

    def secret(self, name: str) -> str:
        """The first (current) value of a secret."""
        return self.secret_values(name)[0]

    def secret_values(self, name: str) -> tuple[str, ...]:
        values = self.secrets.get(name, ())
        if not values:
            raise ConfigError(f"secret {name!r} is not configured")
        return tuple(v.get_secret_value() for v in values)

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


class AdapterConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    tenants: dict[TenantKey, TenantConfig] = Field(default_factory=dict)
    options: dict[str, JsonValue] = Field(default_factory=dict)


class ChannelsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    adapters: dict[str, AdapterConfig] = Field(default_factory=dict)

    def enabled(self) -> dict[str, AdapterConfig]:
        return {name: cfg for name, cfg in self.adapters.items() if cfg.enabled}


def load_channels_config(path: str | Path) -> ChannelsConfig:
    """Parse and validate the channels file; a bad file raises :class:`ConfigError` naming the field."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read channels file {path}: {exc}") from None
    try:
        return ChannelsConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid channels file {path}: {exc}") from None
