"""Notifier settings: ``SWITCHBOARD_*`` environment variables (lists as JSON, e.g. ``'["a.example.com"]'``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from switchboard.common.settings import ServiceSettings
from switchboard.notifier.router_client import router_base


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    http_port: int = Field(default=8084, ge=0, le=65535)
    consumer_group: str = "switchboard-notifier"

    # Slack: the sink is enabled by a bot token, the interactivity endpoint by the signing secret.
    slack_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base URL")
    slack_posts_per_second: float = Field(default=1.0, gt=0, description="Per channel")

    # Email over SMTP: enabled by a sender address.
    email_sender: str | None = None
    email_sender_name: str = "Switchboard"
    email_reply_local_part: str = "support"
    email_reply_domain: str | None = Field(default=None, description="Reply-To domain; the sender's when unset")
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_use_tls: bool = False
    smtp_start_tls: bool | None = Field(default=None, description="True requires STARTTLS; unset uses it if offered")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_validate_certs: bool = True
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)

    # Signed webhooks: enabled by at least one secret (whsec_...); list the new one first when rotating.
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    webhook_allowed_hosts: list[str] = Field(default_factory=list, description="Host names or *.domain; * = any")
    webhook_allow_private: bool = Field(default=False, description="Allow loopback/private/link-local addresses")

    # Teams: Workflows webhook URLs, to these hosts only.
    teams_enabled: bool = True
    teams_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*.logic.azure.com", "*.powerplatform.com", "*.webhook.office.com"]
    )

    http_timeout_seconds: float = Field(default=10.0, gt=0)

    # Reliability.
    retry_max_attempts: int = Field(default=5, ge=1, description="Tries per endpoint before the dead-letter topic")
    retry_base_seconds: float = Field(default=0.5, gt=0)
    retry_cap_seconds: float = Field(default=30.0, gt=0)
    retry_after_max_seconds: float = Field(default=120.0, gt=0)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    delivered_store_max: int = Field(default=1_000_000, ge=1000)

    # Concurrency: dispatches of different conversations are delivered side by side (up to this
    # many at a time); one conversation's dispatches stay in order. 1 = one at a time per batch.
    max_concurrent_deliveries: int = Field(default=32, ge=1, le=10_000)

    # The built-in agent inbox (endpoint kind ``inbox``, target ``tenant/agent``) and its pages
    # under /inbox/. Unauthenticated: meant for the embedded default; turn it off in production.
    inbox_enabled: bool = True
    inbox_max_items: int = Field(default=200, ge=1, le=10_000, description="Kept per agent, newest first")
    inbox_max_agents: int = Field(default=10_000, ge=1, description="Inboxes kept; the least recently used go")
    router_url: str = Field(default="http://127.0.0.1:8083", description="Router API, for inbox actions")

    @field_validator("router_url")
    @classmethod
    def _router_url(cls, value: str) -> str:
        router_base(value)  # raises ValueError with a clear message
        return value
