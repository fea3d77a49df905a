"""Per-adapter metrics on an explicit Prometheus registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["AdapterMetrics"]


class AdapterMetrics:
    """Counters labelled by adapter; one instance per host, on the registry it is given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "switchboard_webhook_requests",
            "Webhook requests by adapter and outcome (ok, duplicate, or an error code)",
            ["adapter", "outcome"],
            registry=registry,
        )
        self.messages = Counter(
            "switchboard_webhook_messages",
            "Inbound messages published, by adapter",
            ["adapter"],
            registry=registry,
        )
        self.duplicates = Counter(
            "switchboard_webhook_duplicates",
            "Inbound messages dropped as provider retries, by adapter",
            ["adapter"],
            registry=registry,
        )
        self.seconds = Histogram(
            "switchboard_webhook_seconds",
            "Time from request to answer, by adapter",
            ["adapter"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
