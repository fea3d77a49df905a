"""Which instance owns which tenant: partitions, co-partitioned topics and the owner directory.

Every input topic (inbound, agent events, delivery results) is keyed by tenant with the
same number of partitions, so a tenant lives on the same partition number everywhere;
the router's changelog uses that number too. :func:`directory_assignor` builds a range
assignor (which gives one instance the same partition numbers of every topic, like
Kafka Streams' co-partitioning) that also tells every member who owns each partition:
each member announces its base URL in its subscription, the group leader writes the
partition → URL map into every member's assignment. A read for a tenant this instance
does not own is proxied to the owner found there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.partitioner import murmur2

__all__ = ["OwnerDirectory", "directory_assignor", "partition_of"]


def partition_of(tenant_id: str, partitions: int) -> int:
    """The partition a tenant's records land on (the Java client's and aiokafka's default partitioner)."""
    hashed: int = murmur2(tenant_id.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass
class OwnerDirectory:
    """Partition number → base URL of the instance that owns it, as of the last rebalance."""

    owners: dict[int, str] = field(default_factory=dict)
    generation: int = 0

    def update(self, owners: Mapping[int, str]) -> None:
        self.owners = dict(owners)
        self.generation += 1

    def owner_of(self, partition: int) -> str | None:
        return self.owners.get(partition)


def directory_assignor(base_url: str, directory: OwnerDirectory) -> type[RangePartitionAssignor]:
    """A range assignor class bound to this instance's URL and directory (aiokafka assignors are classes)."""

    class DirectoryRangeAssignor(RangePartitionAssignor):  # type: ignore[misc]
        name = "switchboard-range"
        version = 0

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), base_url.encode("utf-8"))

        @classmethod
        def assign(
            cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            plan: dict[str, ConsumerProtocolMemberAssignment] = RangePartitionAssignor.assign.__func__(
                cls, cluster, members
            )
            owners: dict[int, str] = {}
            for member_id, assignment in plan.items():
                url = members[member_id].user_data.decode("utf-8", "replace")
                for _topic, partitions in assignment.assignment:
                    for partition in partitions:
                        owners[partition] = url
            payload = json.dumps({str(p): u for p, u in sorted(owners.items())}).encode("utf-8")
            return {
                member_id: ConsumerProtocolMemberAssignment(assignment.version, assignment.assignment, payload)
                for member_id, assignment in plan.items()
            }

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            try:
                owners = json.loads(assignment.user_data or b"{}")
                directory.update({int(p): str(u) for p, u in owners.items()})
            except (ValueError, AttributeError):
                directory.update({})

    return DirectoryRangeAssignor
