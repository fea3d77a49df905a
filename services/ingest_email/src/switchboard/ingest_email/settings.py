"""Settings of the email ingest service: ``SWITCHBOARD_*`` environment variables.

Maps and secrets are JSON in the environment, for example::

    SWITCHBOARD_RECIPIENTS='{"support@acme.example": {"tenant": "acme", "inbox": "support"},
                             "@globex.example": "globex"}'
    SWITCHBOARD_MAILGUN_SIGNING_KEYS='{"acme": "key-..."}'
    SWITCHBOARD_SENDGRID_SECRETS='{"acme": "long-random-secret"}'
    SWITCHBOARD_POSTMARK_BASIC_AUTH='{"acme": "user:password"}'
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from switchboard.common.settings import ServiceSettings

from .imap import ImapMailbox
from .normalize import NormalizeLimits
from .routing import RecipientMap, Route
from .s3_blobs import S3Options
from .sender_auth import VerificationPolicy

__all__ = ["ImapMailboxSettings", "IngestEmailSettings", "RecipientRoute"]

TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class RecipientRoute(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: TenantId
    inbox: str | None = None


class ImapMailboxSettings(BaseModel):
    """One mailbox to poll (``SWITCHBOARD_IMAP_MAILBOXES`` is a JSON list of these)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    use_ssl: bool = True
    username: str
    password: SecretStr
    tenant: TenantId
    inbox: str | None = None
    folder: str = "INBOX"
    address: str | None = Field(default=None, description="The mailbox's own address (recipient, reply tokens)")
    move_to: str | None = Field(default=None, description="Move processed mail here instead of flagging it seen")
    poll_seconds: float = Field(default=60.0, gt=0)
    idle: bool = True

    def mailbox(self) -> ImapMailbox:
        return ImapMailbox(
            name=self.name,
            host=self.host,
            port=self.port,
            use_ssl=self.use_ssl,
            username=self.username,
            password=self.password.get_secret_value(),
            tenant_id=self.tenant,
            inbox=self.inbox,
            folder=self.folder,
            address=self.address,
            move_to=self.move_to,
            poll_seconds=self.poll_seconds,
            idle=self.idle,
        )


class IngestEmailSettings(ServiceSettings):
    service_name: str = "ingest-email"
    http_port: int = Field(default=8081, ge=0, le=65535)

    recipients: dict[str, RecipientRoute | TenantId] = Field(
        default_factory=dict,
        description="Recipient address or @domain -> tenant (or {tenant, inbox})",
    )

    smtp_enabled: bool = True
    smtp_host: str = "0.0.0.0"  # noqa: S104  # a container listens on all interfaces
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    smtp_hostname: str | None = Field(default=None, description="Name in the SMTP greeting (default: the host's)")
    smtp_max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    smtp_tls_cert_file: Path | None = None
    smtp_tls_key_file: Path | None = None
    smtp_require_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=300.0, gt=0)

    mailgun_signing_keys: dict[TenantId, SecretStr] = Field(default_factory=dict)
    mailgun_timestamp_tolerance_seconds: float = Field(default=300.0, gt=0)
    mailgun_replay_cache_size: int = Field(default=50_000, ge=100)
    sendgrid_secrets: dict[TenantId, SecretStr] = Field(default_factory=dict)
    postmark_basic_auth: dict[TenantId, SecretStr] = Field(
        default_factory=dict, description="tenant -> 'user:password'"
    )
    webhook_max_body_bytes: int = Field(default=36 * 1024 * 1024, ge=1024)

    imap_mailboxes: list[ImapMailboxSettings] = Field(default_factory=list)

    blob_dir: Path | None = Field(default=None, description="Local directory for attachment content; off when unset")
    blob_s3_bucket: str | None = Field(
        default=None, description="S3 bucket for attachment content (instead of blob_dir)"
    )
    blob_s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint; unset: AWS")
    blob_s3_region: str | None = None
    blob_s3_access_key_id: SecretStr | None = None
    blob_s3_secret_access_key: SecretStr | None = None
    blob_s3_prefix: str = ""
    blob_s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    blob_s3_timeout_seconds: float = Field(default=10.0, gt=0)

    sender_verify_dkim: bool = Field(default=True, description="Verify DKIM signatures aligned with From")
    sender_dkim_dns_timeout_seconds: float = Field(default=3.0, gt=0)
    sender_trusted_authserv_ids: frozenset[str] = Field(
        default=frozenset(), description="authserv-ids whose Authentication-Results are trusted (none by default)"
    )
    sender_trust_provider_verdicts: bool = Field(
        default=True, description="Use Mailgun/SendGrid/Postmark SPF and DKIM verdicts from authenticated webhooks"
    )
    sender_alignment: Literal["relaxed", "strict"] = "relaxed"
    max_attachments: int = Field(default=100, ge=0)
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    max_total_attachment_bytes: int = Field(default=25 * 1024 * 1024, ge=0)
    max_html_chars: int = Field(default=512 * 1024, ge=0)
    max_text_chars: int = Field(default=256 * 1024, ge=0)
    max_record_bytes: int = Field(
        default=900 * 1024,
        ge=64 * 1024,
        description="Largest inbound record published; bodies are shortened to fit (keep it under the broker's "
        "message.max.bytes and the producer's max_request_size, 1 MiB each by default)",
    )
    reply_languages: tuple[str, ...] = Field(
        default=("en",), description="Languages of reply headers to recognise (mail-parser-reply codes)"
    )

    @model_validator(mode="after")
    def _one_blob_store(self) -> IngestEmailSettings:
        if self.blob_dir is not None and self.blob_s3_bucket:
            raise ValueError("set blob_dir or blob_s3_bucket, not both")
        if bool(self.blob_s3_access_key_id) != bool(self.blob_s3_secret_access_key):
            raise ValueError("blob_s3_access_key_id and blob_s3_secret_access_key go together")
        return self

    def s3_options(self) -> S3Options | None:
        if not self.blob_s3_bucket:
            return None
        return S3Options(
            bucket=self.blob_s3_bucket,
            endpoint_url=self.blob_s3_endpoint_url,
            region=self.blob_s3_region,
            access_key_id=self.blob_s3_access_key_id.get_secret_value() if self.blob_s3_access_key_id else None,
            secret_access_key=(
                self.blob_s3_secret_access_key.get_secret_value() if self.blob_s3_secret_access_key else None
            ),
            prefix=self.blob_s3_prefix,
            addressing_style=self.blob_s3_addressing_style,
            read_timeout_seconds=self.blob_s3_timeout_seconds,
        )

    def verification_policy(self) -> VerificationPolicy:
        return VerificationPolicy(
            dkim=self.sender_verify_dkim,
            trusted_authserv_ids=frozenset(i.strip().lower() for i in self.sender_trusted_authserv_ids),
            provider_verdicts=self.sender_trust_provider_verdicts,
            alignment=self.sender_alignment,
        )

    def recipient_map(self) -> RecipientMap:
        routes = {}
        for key, value in self.recipients.items():
            route = value if isinstance(value, RecipientRoute) else RecipientRoute(tenant=value)
            routes[key] = Route(route.tenant, route.inbox)
        return RecipientMap(routes)

    def normalize_limits(self) -> NormalizeLimits:
        return NormalizeLimits(
            max_text_chars=self.max_text_chars,
            max_html_chars=self.max_html_chars,
            max_record_bytes=self.max_record_bytes,
            max_attachments=self.max_attachments,
            max_attachment_bytes=self.max_attachment_bytes,
            max_total_attachment_bytes=self.max_total_attachment_bytes,
            reply_languages=self.reply_languages,
        )
