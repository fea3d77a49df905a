"""Settings: frozen pydantic-settings models read from ``SWITCHBOARD_*`` environment variables.

Each service subclasses :class:`ServiceSettings` and adds its own fields. Secrets are
``SecretStr`` so that :meth:`ServiceSettings.masked` (what is logged at start) never shows them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach Kafka: ``SWITCHBOARD_KAFKA_*``."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_KAFKA_", frozen=True, extra="ignore")

    bootstrap: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    client_id: str = "switchboard"
    enable_idempotence: bool = Field(
        default=False, description="Idempotent producer; needs broker support (the embedded broker lacks it)"
    )
    linger_ms: int = Field(default=5, ge=0)
    max_batch_size: int = Field(
        default=1024**2,
        ge=16384,
        description="Producer batch size per partition; inbound records are ~10 KB, so the 16 KiB default is too small",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        description="Long-poll wait of a fetch; keep short (about 10 ms) on the embedded broker",
    )
    max_poll_records: int = Field(default=500, ge=1)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    request_timeout_ms: int = Field(default=15_000, ge=1000)
    partitions: int = Field(default=12, ge=1, description="Partitions of topics created by topic bootstrap")
    replication_factor: int = Field(default=1, ge=1)
    create_topics: bool = Field(default=True, description="Create missing contract topics at start")

    def client_options(self) -> dict[str, Any]:
        """Connection options shared by aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return options


class ServiceSettings(BaseSettings):
    """Settings every service has: ``SWITCHBOARD_*``. Subclass and override ``http_port``."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", frozen=True, extra="ignore")

    service_name: str = "switchboard"
    topic_prefix: str = Field(default="switchboard.", pattern=r"^[A-Za-z0-9._-]*$")
    http_host: str = "0.0.0.0"  # noqa: S104  # a container listens on all interfaces
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    shutdown_grace_seconds: float = Field(default=25.0, gt=0, description="Budget to drain in-flight work on SIGTERM")
    consumer_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a failing record before it goes to the dead-letter topic"
    )
    gc_gen0_threshold: int = Field(
        default=10_000,
        ge=0,
        description="Garbage collector's first-generation threshold once the service has started (the startup heap "
        "is frozen then); 0 leaves Python's default (700). See switchboard.common.gc_tuning",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def masked(self) -> dict[str, Any]:
        """The settings as logged at start: every secret shown as ``**********``."""
        masked: dict[str, Any] = _mask(self.model_dump(mode="python"))
        return masked


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
