"""Router settings: ``SWITCHBOARD_*`` environment variables."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field

from switchboard.common.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    service_name: str = "router"
    http_port: int = Field(default=8083, ge=0, le=65535)
    consumer_group: str = Field(
        default="switchboard-router", description="Consumer group of the router instances that share the tenants"
    )
    rules_file: Path = Field(
        default=Path("/etc/switchboard/rules/rules.yaml"),
        description="The routing rules (YAML); a mounted ConfigMap is reloaded when it changes",
    )
    rules_check_seconds: float = Field(default=2.0, gt=0, description="How often the rules file is checked for changes")
    advertised_url: str | None = Field(
        default=None,
        description="This instance's base URL for other instances (reads of a tenant are proxied to its owner); "
        "default http://<hostname>:<http_port>",
    )
    timer_resolution_ms: int = Field(
        default=100, ge=10, le=5000, description="Longest a due timer waits while no input arrives"
    )
    explanations_kept: int = Field(
        default=20_000, ge=100, description="Conversations whose recent routing-log entries are kept for the API"
    )
    restore_fetch_max_bytes: int = Field(default=16 * 1024**2, ge=1024**2)
    outbox_max_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        le=16 * 1024**2,
        description="Largest outbox record in the changelog; a step's output is split into as many as it needs. "
        "Keep it well under the broker's message.max.bytes and the producer's max_request_size (1 MiB each by default)",
    )

    def base_url(self) -> str:
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        return f"http://{socket.gethostname()}:{self.http_port}"
