"""The Switchboard channel adapter SDK.

Write an adapter by subclassing :class:`ChannelAdapter` (``name``, ``channel``,
``required_secrets``, ``verify`` and ``parse``), publish it in the ``switchboard.channels``
entry-point group, and test it with :mod:`switchboard.ingest_social.sdk.contract`.
See ``docs/adapters.md``.
"""

from switchboard.ingest_social.sdk.adapter import (
    AdapterServices,
    ChannelAdapter,
    Route,
    RouteHandler,
    Tenant,
    WebhookRequest,
)
from switchboard.ingest_social.sdk.attributes import (
    ALLOWED_ATTRIBUTES_OPTION,
    DEFAULT_ATTRIBUTE_LIMITS,
    AttributeLimits,
    validate_contact_attributes,
)
from switchboard.ingest_social.sdk.config import (
    AdapterConfig,
    ChannelsConfig,
    TenantConfig,
    load_channels_config,
)
from switchboard.ingest_social.sdk.dedupe import DedupeCache
from switchboard.ingest_social.sdk.errors import (
    BadSignature,
    ConfigError,
    Forbidden,
    InvalidContactAttributes,
    MalformedPayload,
    MethodNotAllowed,
    PayloadTooLarge,
    PublishFailed,
    UnknownTenant,
    UnsupportedMediaType,
    WebhookError,
    json_error,
)
from switchboard.ingest_social.sdk.host import build_webhook_app, json_http_errors, mount_adapters
from switchboard.ingest_social.sdk.metrics import AdapterMetrics
from switchboard.ingest_social.sdk.publisher import Publisher, PublisherError
from switchboard.ingest_social.sdk.registry import ENTRY_POINT_GROUP, AdapterRegistry
from switchboard.ingest_social.sdk.verification import (
    constant_time_equals,
    hmac_sha256,
    sign_standard_webhook,
    twilio_signature,
    verify_prefixed_signature,
    verify_standard_webhook,
    verify_token,
)

__all__ = [
    "ALLOWED_ATTRIBUTES_OPTION",
    "DEFAULT_ATTRIBUTE_LIMITS",
    "ENTRY_POINT_GROUP",
    "AdapterConfig",
    "AdapterMetrics",
    "AdapterRegistry",
    "AdapterServices",
    "AttributeLimits",
    "BadSignature",
    "ChannelAdapter",
    "ChannelsConfig",
    "ConfigError",
    "DedupeCache",
    "Forbidden",
    "InvalidContactAttributes",
    "MalformedPayload",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "PublishFailed",
    "Publisher",
    "PublisherError",
    "Route",
    "RouteHandler",
    "Tenant",
    "TenantConfig",
    "UnknownTenant",
    "UnsupportedMediaType",
    "WebhookError",
    "WebhookRequest",
    "build_webhook_app",
    "constant_time_equals",
    "hmac_sha256",
    "json_error",
    "json_http_errors",
    "load_channels_config",
    "mount_adapters",
    "sign_standard_webhook",
    "twilio_signature",
    "validate_contact_attributes",
    "verify_prefixed_signature",
    "verify_standard_webhook",
    "verify_token",
]
