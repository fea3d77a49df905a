"""The contract topics (see docs/architecture.md) and their bootstrap."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from switchboard.common.settings import KafkaSettings

CONTRACT_TOPICS = (
    "inbound.v1",
    "agent-events.v1",
    "dispatch.v1",
    "delivery.v1",
    "routing-log.v1",
    "router-state.v1",
    "dlq.v1",
)

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "router-state.v1": {"cleanup.policy": "compact"},
    "dlq.v1": {"retention.ms": str(30 * 24 * 3600 * 1000)},
}

# With three replicas or more, a write acknowledged by the producer (acks=all) is on at least
# two brokers, so it survives the loss of one. Below three replicas the broker default stays:
# min.insync.replicas=2 on two replicas would stop every write while one broker is down.
MIN_INSYNC_REPLICAS = 2
MIN_INSYNC_REPLICAS_FROM_REPLICATION = 3


def topic_configs(name: str, replication_factor: int) -> dict[str, str]:
    """The configs a contract topic (``name`` without prefix) is created with."""
    if name not in CONTRACT_TOPICS:
        raise ValueError(f"{name!r} is not a contract topic")
    if replication_factor < 1:
        raise ValueError(f"replication factor must be at least 1, got {replication_factor}")
    configs = dict(TOPIC_CONFIGS.get(name, {}))
    if replication_factor >= MIN_INSYNC_REPLICAS_FROM_REPLICATION:
        configs["min.insync.replicas"] = str(MIN_INSYNC_REPLICAS)
    return configs


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names under a prefix (default ``switchboard.``)."""

    prefix: str = "switchboard."

    @property
    def inbound(self) -> str:
        return f"{self.prefix}inbound.v1"

    @property
    def agent_events(self) -> str:
        return f"{self.prefix}agent-events.v1"

    @property
    def dispatch(self) -> str:
        return f"{self.prefix}dispatch.v1"

    @property
    def delivery(self) -> str:
        return f"{self.prefix}delivery.v1"

    @property
    def routing_log(self) -> str:
        return f"{self.prefix}routing-log.v1"

    @property
    def router_state(self) -> str:
        return f"{self.prefix}router-state.v1"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq.v1"

    def all(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{name}" for name in CONTRACT_TOPICS)


def missing_topics(
    topics: Topics, *, partitions: int, replication_factor: int, existing: Collection[str] = ()
) -> list[NewTopic]:
    """The contract topics not in ``existing``, as they are to be created."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return [
        NewTopic(
            name=f"{topics.prefix}{name}",
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs=topic_configs(name, replication_factor),
        )
        for name in CONTRACT_TOPICS
        if f"{topics.prefix}{name}" not in existing
    ]


async def ensure_topics(
    kafka: KafkaSettings,
    topics: Topics,
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
) -> list[str]:
    """Create the contract topics that are missing; returns the names created."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id=f"{kafka.client_id}-admin")
    await admin.start()
    try:
        wanted = missing_topics(
            topics,
            partitions=partitions or kafka.partitions,
            replication_factor=replication_factor or kafka.replication_factor,
            existing=set(await admin.list_topics()),
        )
        if not wanted:
            return []
        response = await admin.create_topics(wanted)
        created = []
        for topic, code, message in _topic_errors(response):
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:  # a concurrent creator won the race
                raise RuntimeError(f"cannot create topic {topic}: error {code} {message or ''}".strip())
        return created
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in getattr(response, "topic_errors", []):
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((topic, code, message))
    return out
