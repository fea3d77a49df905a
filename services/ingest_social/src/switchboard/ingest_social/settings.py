"""Settings of ingest_social: ``SWITCHBOARD_*`` plus ``SWITCHBOARD_INGEST_SOCIAL_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from switchboard.common.settings import ServiceSettings


class IngestSocialSettings(ServiceSettings):
    service_name: str = "ingest-social"
    http_port: int = Field(default=8082, ge=0, le=65535)
    ingest_social_channels_file: Path | None = Field(
        default=None,
        description="YAML file of enabled adapters and each tenant's secrets (a mounted Secret in Kubernetes)",
    )
    ingest_social_public_base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/]+$",
        description="Scheme and host the providers call (for URL-signed webhooks behind a proxy), no path",
    )
    ingest_social_discover_plugins: bool = Field(
        default=True, description="Load third-party adapters from the switchboard.channels entry points"
    )
    ingest_social_dedupe_max_entries: int = Field(default=100_000, ge=1)
    ingest_social_dedupe_ttl_seconds: float = Field(default=24 * 3600, gt=0)
    ingest_social_publish_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long a webhook waits for the broker before answering 503"
    )
