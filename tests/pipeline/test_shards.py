"""The shard writer and readers: deterministic bytes, rollover, keys, npy round trips."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.errors import PrepError
from pipeline.shards import (
    ShardWriter,
    decode_npy,
    encode_json,
    encode_npy,
    iter_tar_samples,
    parse_size,
    sample_key,
)


def write(folder, count, max_bytes=10**9, long_ids=False):
    folder.mkdir()
    rng = np.random.default_rng(0)
    with ShardWriter(folder, "part", max_bytes) as writer:
        for i in range(count):
            key = sample_key(("x" * 120 if long_ids else "") + f"clip.{i:03d}")
            writer.write(
                key,
                {
                    "json": encode_json({"i": i}),
                    "dinov2.npy": encode_npy(rng.standard_normal((5 + i, 4)).astype(np.float16)),
                },
            )
    return writer.shards


def test_same_samples_give_the_same_bytes_and_hash(tmp_path):
    one, two = write(tmp_path / "a", 6), write(tmp_path / "b", 6)
    assert [s.sha256 for s in one] == [s.sha256 for s in two]
    assert one[0].sha256 == hashlib.sha256(one[0].path.read_bytes()).hexdigest()
    assert one[0].path.read_bytes() == two[0].path.read_bytes()


def test_rollover_at_the_size_bound_keeps_samples_whole(tmp_path):
    shards = write(tmp_path / "a", 10, max_bytes=4000)
    assert len(shards) > 2 and sum(s.samples for s in shards) == 10
    keys = [key for s in shards for key, _ in iter_tar_samples(s.path)]
    assert keys == [sample_key(f"clip.{i:03d}") for i in range(10)]
    stats = shards[0].fields["dinov2.npy"].as_dict()
    assert stats["rows"] == sum(5 + i for i in range(shards[0].samples)) and stats["nan"] == 0


def test_long_ids_and_dots_survive_as_keys(tmp_path):
    shards = write(tmp_path / "a", 2, long_ids=True)
    key, fields = next(iter_tar_samples(shards[0].path))
    assert "." not in key and key.endswith("clip%2E000") and len(key) > 100
    assert decode_npy(fields["dinov2.npy"]).shape == (5, 4)
    with pytest.raises(PrepError):
        sample_key("a/b")


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((0, 384), np.float16),
        np.arange(7),
        np.zeros(()),
        np.asfortranarray(np.ones((3, 2))),
        np.ones(4, ">f4"),
    ],
)
def test_npy_round_trip_without_pickle(array):
    back = decode_npy(encode_npy(array))
    assert back.shape == array.shape and back.dtype == array.dtype and np.array_equal(back, array)


def test_object_arrays_are_refused():
    with pytest.raises(ValueError):
        encode_npy(np.array([{"a": 1}], dtype=object))


def test_sizes_read_like_people_write_them():
    assert (
        parse_size("1GB") == 10**9
        and parse_size("64KiB") == 65536
        and parse_size("1.5 MB") == 1_500_000
    )
    with pytest.raises(PrepError):
        parse_size("lots")
