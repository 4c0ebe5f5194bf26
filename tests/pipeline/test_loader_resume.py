"""Mid-epoch resumption of the training loader (torchdata's ``state_dict`` protocol): stopped
after any batch and restored in a new process, the rest of the epoch is the uninterrupted run's,
sample for sample and frame for frame; restored on another world size, every sample not yet
seen is seen exactly once, with equal batches per rank."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.loader import make_loader
from pipeline.shards import ShardWriter, encode_json, encode_npy, wids_index
from pipeline.storage import atomic_write_json
from tests.conftest import REPO

SAMPLES = 45


def write_run(
    out: Path, samples: int = SAMPLES, split: str = "train", shard_bytes=4000, prefix="clip"
) -> Path:
    """A prepared run's shards, written directly (as bench/features.py does): float16 [T, 8]
    clips, T from 4 to 30, a few samples per shard."""
    folder = out / "shards" / split
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    with ShardWriter(folder, split, shard_bytes) as writer:
        for i in range(samples):
            length = int(rng.integers(4, 31))
            meta = {
                "id": f"{prefix}{i:04d}",
                "num_frames": length,
                "fields": {"dinov2.npy": {"dtype": "float16", "shape": [length, 8]}},
            }
            clip = (rng.standard_normal((length, 8)) + i).astype(np.float16)
            writer.write(meta["id"], {"json": encode_json(meta), "dinov2.npy": encode_npy(clip)})
    entries = [s.as_dict() for s in writer.shards]
    atomic_write_json(folder / "index.json", wids_index(split, entries, {"samples": samples}))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("resume") / "out")


OPTIONS = {
    "train": dict(batch_size=4, shuffle_buffer=8, frame_stride=2, random_shift=3, max_frames=6),
    "eval": dict(batch_size=4, train=False, max_frames=5),
}


def summary(batch) -> list:
    """Each row's key, frame positions and a digest of its frames: equal means identical."""
    rows = []
    for row, key in enumerate(batch["__key__"]):
        length = int(batch["lengths"][row])
        frames = batch["dinov2"][row, :length].numpy().tobytes()
        positions = batch["frame_positions"][row, :length].tolist()
        rows.append([key, positions, hashlib.sha256(frames).hexdigest()[:12]])
    return rows


RESUME = """
import json, sys
from pipeline.loader import make_loader
from tests.pipeline.test_loader_resume import summary
jobs = json.loads(sys.argv[1])
results = []
for job in jobs:
    loader = make_loader(job["out"], "train", **job["options"])
    loader.load_state_dict(job["state"])
    results.append([summary(batch) for batch in loader])
print(json.dumps(results))
"""


def resumed_in_new_process(jobs: list[dict]) -> list:
    done = subprocess.run(
        [sys.executable, "-c", RESUME, json.dumps(jobs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_stopping_point_resumes_exactly_in_process(run):
    for mode, options in OPTIONS.items():
        loader = make_loader(run, "train", num_workers=0, seed=3, **options)
        loader.set_epoch(2)
        whole = [summary(b) for b in loader]
        assert len(whole) == len(loader) and whole
        for stop in range(len(whole) + 1):
            first = make_loader(run, "train", num_workers=0, seed=3, **options)
            first.set_epoch(2)
            batches = iter(first)
            taken = [summary(next(batches)) for _ in range(stop)]
            state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
            second = make_loader(run, "train", num_workers=0, seed=3, **options)
            second.load_state_dict(state)
            assert taken + [summary(b) for b in second] == whole, (mode, stop)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_restored_in_a_new_process_the_rest_is_the_uninterrupted_run(run, mode):
    """num_workers 0, 2 and 4: stopped after the third batch (workers had prefetched more),
    restored in a new process with the same worker count."""
    jobs, expected = [], []
    for workers in (0, 2, 4):
        options = {**OPTIONS[mode], "num_workers": workers, "seed": 11}
        whole = [summary(b) for b in make_loader(run, "train", **options)]
        interrupted = make_loader(run, "train", **options)
        taken = []
        for batch in interrupted:
            taken.append(summary(batch))
            if len(taken) == 3:
                break
        assert taken == whole[:3]
        jobs.append({"out": str(run), "options": options, "state": interrupted.state_dict()})
        expected.append(whole[3:])
    assert resumed_in_new_process(jobs) == expected


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b["__key__"]]


@pytest.mark.parametrize("new_world", [2, 3, 5])
def test_restored_on_another_world_size_every_unseen_sample_comes_once(run, new_world):
    """Saved on 4 ranks after 2 batches each, restored on 2, 3 or 5 ranks: the unseen samples
    are each seen exactly once across ranks; repeats only pad the last step, and every rank
    gets as many batches as the others."""
    options = dict(batch_size=3, shuffle_buffer=10, num_workers=0, seed=5)
    seen, states = [], []
    for rank in range(4):
        loader = make_loader(run, "train", rank=rank, world_size=4, **options)
        loader.set_epoch(1)
        taken = []
        for batch in loader:
            taken.append(batch)
            if len(taken) == 2:
                break
        seen += keys_of(taken)
        states.append(loader.state_dict())
    assert len(set(seen)) == len(seen) == 4 * 2 * 3
    assert all(s == states[0] for s in states)
    rest = []
    lengths = set()
    for rank in range(new_world):
        loader = make_loader(run, "train", rank=rank, world_size=new_world, **options)
        loader.load_state_dict(states[rank % 4])
        announced = len(loader)
        batches = list(loader)
        assert len(batches) == announced
        lengths.add(announced)
        rest += keys_of(batches)
    unseen = {f"clip{i:04d}" for i in range(SAMPLES)} - set(seen)
    counts = Counter(rest)
    assert all(counts[key] == 1 for key in unseen) and len(lengths) == 1
    padding = [key for key in rest if key not in unseen]
    assert len(padding) < new_world * 3 and set(padding) <= set(seen)  # repeats of seen ones
    assert len(rest) == len(unseen) + len(padding)


def test_evaluation_restored_on_fewer_ranks_sees_the_rest_once(run):
    options = dict(batch_size=2, train=False, num_workers=2)
    seen, states = [], []
    for rank in range(4):
        loader = make_loader(run, "train", rank=rank, world_size=4, **options)
        iterator = iter(loader)
        seen += keys_of([next(iterator), next(iterator)])
        states.append(loader.state_dict())
    rest = Counter()
    for rank in range(3):
        loader = make_loader(run, "train", rank=rank, world_size=3, **options)
        loader.load_state_dict(states[0])
        rest.update(keys_of(loader))
    assert set(rest.values()) == {1} and set(rest) | set(seen) == {
        f"clip{i:04d}" for i in range(SAMPLES)
    }
    assert not set(rest) & set(seen)


def test_a_state_from_another_stream_is_refused_in_one_line(run):
    state = make_loader(run, "train", num_workers=0, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed=1.*seed=2"):
        make_loader(run, "train", num_workers=0, seed=2).load_state_dict(state)
