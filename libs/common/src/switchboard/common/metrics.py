"""Prometheus metrics on an explicit registry (one per service instance, never the global one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class KafkaMetrics:
    """Metrics of the shared Kafka helpers, registered on the service's registry."""

    registry: CollectorRegistry
    produced: Counter = field(init=False)
    produce_errors: Counter = field(init=False)
    consumed: Counter = field(init=False)
    handler_errors: Counter = field(init=False)
    dead_letters: Counter = field(init=False)
    commits: Counter = field(init=False)
    lag: Gauge = field(init=False)
    batch_seconds: Histogram = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.produced = Counter(
            "switchboard_produced_records", "Records acknowledged by the broker", ["topic"], registry=r
        )
        self.produce_errors = Counter(
            "switchboard_produce_errors", "Records the broker did not acknowledge", ["topic"], registry=r
        )
        self.consumed = Counter("switchboard_consumed_records", "Records consumed", ["topic"], registry=r)
        self.handler_errors = Counter(
            "switchboard_handler_errors", "Failed attempts to handle a record", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "switchboard_dead_letters", "Records written to the dead-letter topic", ["topic"], registry=r
        )
        self.commits = Counter("switchboard_offset_commits", "Offset commits", registry=r)
        self.lag = Gauge(
            "switchboard_kafka_consumer_lag",
            "Records behind the partition end",
            ["topic", "partition"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "switchboard_consumer_batch_seconds",
            "Time to handle a fetched batch and commit it (pipelined: from hand-out to its last record's end)",
            registry=r,
        )


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)
