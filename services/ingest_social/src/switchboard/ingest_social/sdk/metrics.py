"""Per-adapter metrics on an explicit Prometheus registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["AdapterCounters", "AdapterMetrics"]


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
        self._adapters: dict[str, AdapterCounters] = {}

    def adapter(self, name: str) -> AdapterCounters:
        """The metric children of one adapter (created on first use, then reused)."""
        counters = self._adapters.get(name)
        if counters is None:
            counters = self._adapters[name] = AdapterCounters(self, name)
        return counters


class AdapterCounters:
    """One adapter's metric children, resolved once: ``.labels()`` on every request is slow."""

    def __init__(self, metrics: AdapterMetrics, adapter: str) -> None:
        self._metrics = metrics
        self._adapter = adapter
        self.ok = metrics.requests.labels(adapter, "ok")
        self.messages = metrics.messages.labels(adapter)
        self.duplicates = metrics.duplicates.labels(adapter)
        self.seconds = metrics.seconds.labels(adapter)
        self._outcomes: dict[str, Counter] = {"ok": self.ok}

    def outcome(self, code: str) -> Counter:
        """The request counter of an outcome (``ok`` or an error code)."""
        child = self._outcomes.get(code)
        if child is None:
            child = self._outcomes[code] = self._metrics.requests.labels(self._adapter, code)
        return child
