"""What a pipelined consumer may commit while records finish out of order."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from switchboard.common.kafka.inflight import InFlight

A = TopicPartition("t", 0)
B = TopicPartition("t", 1)


def test_only_the_finished_prefix_of_each_partition_is_committable() -> None:
    inflight = InFlight()
    for offset in (10, 11, 12):
        inflight.add(A, offset)
    inflight.add(B, 5)
    inflight.finish(A, 11)  # finished before the record ahead of it
    inflight.finish(B, 5)
    assert inflight.committable() == {B: 6}
    assert len(inflight) == 2
    inflight.finish(A, 10)
    assert inflight.committable() == {A: 12}
    assert inflight.committable() == {}  # nothing new since the last answer
    inflight.finish(A, 12)
    assert inflight.committable() == {A: 13}
    assert len(inflight) == 0


def test_a_record_that_never_finishes_blocks_its_partition_only() -> None:
    inflight = InFlight()
    inflight.add(A, 1)
    inflight.add(A, 2)
    inflight.add(B, 1)
    inflight.finish(A, 1)
    inflight.block(A)  # offset 2 will not finish: the loop is stopping with the broker away
    inflight.finish(B, 1)
    assert inflight.committable() == {B: 2}
    assert len(inflight) == 0


def test_offsets_must_be_handed_out_in_order_and_clear_forgets_everything() -> None:
    inflight = InFlight()
    inflight.add(A, 3)
    with pytest.raises(ValueError, match="added after"):
        inflight.add(A, 3)
    inflight.finish(A, 3)
    inflight.clear()
    assert inflight.committable() == {}
    assert len(inflight) == 0
    inflight.add(A, 1)  # after a rewind the partition starts afresh
    inflight.finish(A, 1)
    assert inflight.committable() == {A: 2}


def test_a_revoked_partition_is_forgotten_and_starts_afresh_when_it_comes_back() -> None:
    inflight = InFlight()
    inflight.add(A, 7)
    inflight.add(A, 8)
    inflight.add(B, 4)
    inflight.finish(A, 7)
    inflight.block(A)  # offset 8 never finished
    inflight.forget({A})
    assert len(inflight) == 1  # B's record is still out
    inflight.add(A, 7)  # read again from the commit by this consumer, once reassigned
    inflight.finish(A, 7)
    assert inflight.committable() == {A: 8}
    inflight.finish(B, 4)
    assert len(inflight) == 0
