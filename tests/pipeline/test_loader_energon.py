"""prep's shards open in NVIDIA's Megatron-Energon: the metadata prep writes is what
``energon prepare`` writes for the same shards (compared with the real command), and Energon's
own loader reads a split sample for sample."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.energon import META, collapsed, write_energon_meta
from pipeline.shard_reader import read_samples
from pipeline.shards import decode_npy, read_index
from tests.conftest import missing
from tests.pipeline.test_loader_resume import write_run


def energon():
    """megatron-energon, or a one-line skip naming the extra that brings it."""
    try:
        import megatron.energon
    except ImportError:
        missing(
            "megatron-energon is not installed: pip install 'prep[dev]' (megatron-energon==7.4.1)"
        )
    return megatron.energon


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A run with a train and a dev split (keys unique across them, as Energon requires)."""
    out = write_run(tmp_path_factory.mktemp("energon") / "out", samples=30)
    write_run(out, samples=9, split="dev", prefix="dev")
    write_energon_meta(out / "shards")
    return out / "shards"


def rows(database: Path) -> dict[str, list]:
    with sqlite3.connect(database) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 3, 4").fetchall()
            for table in ("samples", "sample_parts")
        }


def test_the_metadata_is_what_energon_prepare_writes(shards, tmp_path):
    energon()
    theirs = tmp_path / "shards"
    shutil.copytree(shards, theirs, ignore=shutil.ignore_patterns(META, "*.idx"))
    command = [str(Path(sys.executable).with_name("energon")), "prepare", str(theirs)]
    options = ["--non-interactive", "--sample-type", "CrudeWebdataset", "--num-workers", "1"]
    splits = ["--split-parts", "dev:dev/.*", "--split-parts", "train:train/.*"]
    done = subprocess.run(command + options + splits, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name in (".info.json", "split.yaml", "dataset.yaml"):
        assert (shards / META / name).read_bytes() == (theirs / META / name).read_bytes(), name
    for idx in sorted(theirs.glob("*/*.tar.idx")):
        assert (shards / idx.relative_to(theirs)).read_bytes() == idx.read_bytes(), idx.name
    assert rows(shards / META / "index.sqlite") == rows(theirs / META / "index.sqlite")


def test_energon_reads_the_dev_split_sample_for_sample(shards):
    e = energon()
    import dataclasses

    @dataclasses.dataclass
    class Clip(e.Sample):
        features: np.ndarray
        meta: dict

    @e.stateless
    def cook(crude: dict) -> Clip:  # Energon has decoded .npy and .json already
        return Clip(**e.basic_sample_keys(crude), features=crude["dinov2.npy"], meta=crude["json"])

    class Encoder(e.DefaultTaskEncoder):
        cookers = [e.Cooker(cook)]

    dataset = e.get_val_dataset(
        shards,
        split_part="dev",
        worker_config=e.WorkerConfig(rank=0, world_size=1, num_workers=0),
        batch_size=None,
        task_encoder=Encoder(),
    )
    got = [(s.__key__, s.features, s.meta) for s in e.get_loader(dataset)]
    folder = shards / "dev"
    expected = [
        sample
        for entry in read_index(folder)["shardlist"]
        for sample in read_samples(str(folder / entry["url"]), entry)
    ]
    assert [key for key, _, _ in got] == [s["__key__"] for s in expected]
    for (_, features, meta), sample in zip(got, expected):
        assert meta == json.loads(sample["json"])
        assert np.array_equal(features, decode_npy(sample["dinov2.npy"]))


def test_numbered_shards_collapse_as_energon_writes_them():
    names = ["t/t-08.tar", "t/t-09.tar", "t/t-10.tar", "t/x.tar", "t/t-12.tar", "t/t-13.tar"]
    assert collapsed(names) == ["t/t-{08..10}.tar", "t/x.tar", "t/t-{12..13}.tar"]
