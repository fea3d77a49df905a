"""The topic configs ``ensure_topics`` creates the contract topics with (no broker needed)."""

from __future__ import annotations

import pytest

from switchboard.common.topics import CONTRACT_TOPICS, Topics, missing_topics, topic_configs

DLQ_RETENTION_MS = str(30 * 24 * 3600 * 1000)


@pytest.mark.parametrize("replication_factor", [3, 4, 5])
def test_three_replicas_or_more_require_two_in_sync(replication_factor: int) -> None:
    for name in CONTRACT_TOPICS:
        assert topic_configs(name, replication_factor)["min.insync.replicas"] == "2", name


@pytest.mark.parametrize("replication_factor", [1, 2])
def test_fewer_replicas_keep_the_broker_default(replication_factor: int) -> None:
    # min.insync.replicas=2 on two replicas would refuse every write while one broker is down.
    for name in CONTRACT_TOPICS:
        assert "min.insync.replicas" not in topic_configs(name, replication_factor), name


@pytest.mark.parametrize("replication_factor", [1, 3])
def test_router_state_is_compacted_and_dead_letters_are_kept_30_days(replication_factor: int) -> None:
    assert topic_configs("router-state.v1", replication_factor)["cleanup.policy"] == "compact"
    assert "retention.ms" not in topic_configs("router-state.v1", replication_factor)
    dlq = topic_configs("dlq.v1", replication_factor)
    assert dlq["retention.ms"] == DLQ_RETENTION_MS
    assert "cleanup.policy" not in dlq
    for name in set(CONTRACT_TOPICS) - {"router-state.v1", "dlq.v1"}:
        configs = topic_configs(name, replication_factor)
        assert "cleanup.policy" not in configs, name
        assert "retention.ms" not in configs, name


def test_configs_are_fresh_copies() -> None:
    first = topic_configs("router-state.v1", 3)
    first["cleanup.policy"] = "delete"
    assert topic_configs("router-state.v1", 3)["cleanup.policy"] == "compact"
    assert "min.insync.replicas" not in topic_configs("router-state.v1", 1)


def test_unknown_topic_and_bad_replication_are_refused() -> None:
    with pytest.raises(ValueError, match="not a contract topic"):
        topic_configs("switchboard.inbound.v1", 3)  # the prefixed name is not the contract name
    with pytest.raises(ValueError, match="replication factor"):
        topic_configs("inbound.v1", 0)


def test_missing_topics_builds_every_contract_topic_under_the_prefix() -> None:
    wanted = missing_topics(Topics("acme."), partitions=12, replication_factor=3)
    assert [t.name for t in wanted] == [f"acme.{name}" for name in CONTRACT_TOPICS]
    by_name = {t.name: t for t in wanted}
    for topic in wanted:
        assert topic.num_partitions == 12
        assert topic.replication_factor == 3
        assert topic.topic_configs["min.insync.replicas"] == "2"
    assert by_name["acme.router-state.v1"].topic_configs["cleanup.policy"] == "compact"
    assert by_name["acme.dlq.v1"].topic_configs["retention.ms"] == DLQ_RETENTION_MS
    assert by_name["acme.inbound.v1"].topic_configs == {"min.insync.replicas": "2"}


def test_missing_topics_leaves_existing_ones_alone() -> None:
    topics = Topics("switchboard.")
    existing = {topics.inbound, topics.router_state, "other.topic"}
    wanted = missing_topics(topics, partitions=3, replication_factor=1, existing=existing)
    assert {t.name for t in wanted} == set(topics.all()) - existing
    dlq = next(t for t in wanted if t.name == topics.dlq)
    assert dlq.topic_configs == {"retention.ms": DLQ_RETENTION_MS}
    assert missing_topics(topics, partitions=3, replication_factor=1, existing=set(topics.all())) == []


def test_missing_topics_refuses_zero_partitions() -> None:
    with pytest.raises(ValueError, match="partitions"):
        missing_topics(Topics(), partitions=0, replication_factor=3)
