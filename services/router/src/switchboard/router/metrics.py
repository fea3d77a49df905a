"""The router's Prometheus metrics, on the service's explicit registry.

Queue depth, oldest wait and agents by presence are computed from the engine's state when
Prometheus scrapes (a collector), so they cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.router.engine import RouterEngine

__all__ = ["RouterMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "switchboard_router_decisions_total",
            "Routing decisions by kind (routing-log entries)",
            ["decision"],
            registry=registry,
        )
        self.dispatches = Counter(
            "switchboard_router_dispatches_total", "Dispatches written for the notifier", ["kind"], registry=registry
        )
        self.sla_warnings = Counter(
            "switchboard_router_sla_warnings_total", "SLA warnings sent to assignees", registry=registry
        )
        self.sla_breaches = Counter("switchboard_router_sla_breaches_total", "SLA targets breached", registry=registry)
        self.assignment_latency = Histogram(
            "switchboard_router_assignment_latency_seconds",
            "From an inbound message's receipt by ingest to its dispatch being acknowledged",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.step_seconds = Histogram(
            "switchboard_router_step_seconds",
            "Writing one step's changelog, dispatches and log",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "switchboard_router_restore_seconds",
            "Restoring assigned partitions from the changelog",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.restored_records = Counter(
            "switchboard_router_restored_records_total", "Changelog records read by restores", registry=registry
        )
        self.outboxes_resent = Counter(
            "switchboard_router_outboxes_resent_total",
            "Unfinished steps whose dispatches were sent again after a restore",
            registry=registry,
        )
        self.rules_reloads = Counter(
            "switchboard_router_rules_reloads_total", "Rules file reloads by result", ["result"], registry=registry
        )
        self.rules_valid = Gauge(
            "switchboard_router_rules_file_valid",
            "1 when the rules file on disk is the one in force, 0 when it is invalid (the previous rules stay)",
            registry=registry,
        )
        self.owned_partitions = Gauge(
            "switchboard_router_owned_partitions", "Partitions (tenant groups) this instance owns", registry=registry
        )

    def watch(self, engine: Callable[[], RouterEngine], registry: CollectorRegistry) -> None:
        """Export queue and agent gauges computed from the engine at scrape time."""
        registry.register(_StateCollector(engine))


class _StateCollector(Collector):
    def __init__(self, engine: Callable[[], RouterEngine]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        now = datetime.now(UTC)
        depth = GaugeMetricFamily(
            "switchboard_router_queue_depth", "Conversations waiting in a queue", labels=["tenant", "queue"]
        )
        oldest = GaugeMetricFamily(
            "switchboard_router_oldest_wait_seconds",
            "How long the oldest waiting conversation of a queue has waited",
            labels=["tenant", "queue"],
        )
        agents = GaugeMetricFamily("switchboard_router_agents", "Agents by presence", labels=["tenant", "presence"])
        for tenant in engine.tenants():
            for stats in engine.queue_stats(tenant):
                depth.add_metric([tenant, stats.queue_id], stats.depth)
                wait = (now - stats.oldest_enqueued_at).total_seconds() if stats.oldest_enqueued_at else 0.0
                oldest.add_metric([tenant, stats.queue_id], max(0.0, wait))
            by_presence: dict[str, int] = {}
            for agent in engine.agents(tenant):
                by_presence[agent.presence.value] = by_presence.get(agent.presence.value, 0) + 1
            for presence, count in sorted(by_presence.items()):
                agents.add_metric([tenant, presence], count)
        yield depth
        yield oldest
        yield agents

    def describe(self) -> Iterator[Metric]:
        return iter(())
