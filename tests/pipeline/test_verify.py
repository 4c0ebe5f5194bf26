"""prep verify over real shards: passes on a clean run, names every kind of damage."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import prep


@pytest.fixture(scope="module")
def prepared(phoenix_template, tmp_path_factory, tiny_dinov2):
    out = tmp_path_factory.mktemp("verify") / "out"
    result = prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        "phoenix14t",
        "--root",
        phoenix_template,
        "--out",
        out,
        "--dinov2",
        tiny_dinov2,
        "--shard-clips",
        5,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def copy(prepared, tmp_path):
    return shutil.copytree(prepared, tmp_path / "out")


def test_a_clean_run_verifies(prepared):
    result = prep("verify", "--out", prepared)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [
        (stage, split) for stage in ("manifest", "features") for split in ("train", "dev", "test")
    ]
    assert all(r[-1] == "ok" for r in rows)


def test_one_flipped_byte_is_caught_and_named(copy):
    shard = sorted((copy / "shards" / "dev").glob("*.tar"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    result = prep("verify", "--out", copy)
    assert result.exit_code == 1
    assert f"{shard.name}: sha256 differs from the index" in result.output


def test_a_lost_shard_and_its_samples_are_named(copy):
    index_path = copy / "shards" / "train" / "index.json"
    index = json.loads(index_path.read_text())
    lost = index["shardlist"][0]["url"]
    (copy / "shards" / "train" / lost).unlink()
    result = prep("verify", "--out", copy)
    assert result.exit_code == 1
    assert f"{lost}: listed in the index but missing" in result.output
    assert "is in no shard and not in the quarantine" in result.output


def test_a_sample_written_twice_is_named(copy):
    folder = copy / "shards" / "test"
    index = json.loads((folder / "index.json").read_text())
    first = index["shardlist"][0]
    duplicate = dict(first, url="copy-of-first.tar")
    shutil.copy(folder / first["url"], folder / duplicate["url"])
    index["shardlist"].append(duplicate)
    index["samples"] += first["nsamples"]
    (folder / "index.json").write_text(json.dumps(index))
    result = prep("verify", "--out", copy)
    assert result.exit_code == 1 and "appears 2 times" in result.output
