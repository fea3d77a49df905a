"""The producer's partitioner: aiokafka's default partitions, each key hashed once."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from switchboard.common.kafka.producer import CachedKeyPartitioner


def test_every_key_goes_where_the_default_partitioner_puts_it() -> None:
    rng = random.Random(7)
    cached, default = CachedKeyPartitioner(max_keys=64), DefaultPartitioner()
    keys = [b"acme", b"globex", b"", b"\xff\x00"] + [rng.randbytes(rng.randint(1, 40)) for _ in range(500)]
    for partitions in (1, 3, 12, 24):
        all_partitions = list(range(partitions))
        for key in keys + keys:  # the second round is answered from the cache (or recomputed past 64 keys)
            assert cached(key, all_partitions, all_partitions) == default(key, all_partitions, all_partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    cached = CachedKeyPartitioner()
    assert {cached(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {cached(None, [0, 1, 2], []) for _ in range(50)} <= {0, 1, 2}
