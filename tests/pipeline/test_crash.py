"""Crash safety: a stage run as a separate process is killed with SIGKILL at seeded random moments
(inside units, between units, during the merge), resumed each time, then allowed to finish.

Afterwards: every committed unit folder has its marker, no temporary file is left in the unit
folders or the published folders nor referenced by an index, every tar matches its index entry,
every sample is there exactly once, ``prep verify`` passes, and the published outputs are byte
for byte those of a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.layout import DONE_MARKER, OLD_PREFIX, TMP_PREFIX, UNIT_STATS, Layout
from pipeline.shards import iter_tar_samples, sample_key
from tests.conftest import manifest_rows, prep
from tests.pipeline.prep_process import file_digests, run_prep, start_prep

SPLITS = ("train", "dev", "test")
KILLS = 2
MAX_ATTEMPTS = 8  # kills until at least one landed inside a unit


def committed(units: Path) -> int:
    return sum(1 for _ in units.glob(f"*/[0-9]*/{DONE_MARKER}"))


def inside_a_unit(units: Path) -> bool:
    return any(units.glob(f"*/{TMP_PREFIX}*"))


def wait_for(condition, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def kill_and_resume(args: tuple, out: Path, stage: str, seed: int) -> list[str]:
    """SIGKILL runs of ``args`` at seeded moments, then finish; returns where each kill landed."""
    rng = random.Random(seed)
    units = Layout(out).units_dir(stage)
    landed: list[str] = []
    while len(landed) < MAX_ATTEMPTS and (len(landed) < KILLS or "inside a unit" not in landed):
        process = start_prep(*args)
        target = committed(units) + rng.randint(1, 3)  # let a few units commit, then strike
        wait_for(lambda target=target: committed(units) >= target, process)
        time.sleep(rng.uniform(0.0, 0.05))
        if process.poll() is not None:
            landed.append("after the run ended")
            continue
        process.kill()
        process.wait()
        landed.append("inside a unit" if inside_a_unit(units) else "between units")
    lock = Layout(out).merge_lock(stage)
    process = start_prep(*args)  # once more, struck the moment the merge starts
    wait_for(lock.exists, process)
    process.kill()
    process.wait()
    landed.append(
        "during the merge" if process.returncode == -9 and lock.exists() else "after the run ended"
    )
    result = run_prep(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return landed


def assert_units_committed_whole(out: Path, stage: str) -> None:
    units = Layout(out).units_dir(stage)
    folders = [p for p in units.glob("*/*") if p.is_dir()]
    assert folders and not [p for p in folders if p.name.startswith(TMP_PREFIX)]
    for folder in folders:
        assert (folder / DONE_MARKER).is_file() and (folder / UNIT_STATS).is_file(), folder
        assert not [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)], folder
    assert not Layout(out).merge_lock(stage).exists()


def assert_no_temporaries(*folders: Path) -> None:
    for folder in folders:
        left = [p for p in folder.rglob("*") if p.name.startswith((TMP_PREFIX, OLD_PREFIX))]
        assert not left, left


def published_digests(out: Path, *folders: str) -> dict[str, str]:
    """Every published file; summary.json without its ``outputs`` (the absolute output folder)."""
    found = {}
    for name in folders:
        found.update(
            {
                f"{name}/{k}": v
                for k, v in file_digests(out / name, lambda r: r == "summary.json").items()
            }
        )
        summary = out / name / "summary.json"
        if summary.is_file():
            found[f"{name}/summary.json"] = {
                k: v for k, v in json.loads(summary.read_text()).items() if k != "outputs"
            }
    return found


def test_features_survive_sigkill_anywhere(phoenix_template, tiny_dinov2, tmp_path):
    out, reference = tmp_path / "out", tmp_path / "reference"
    args = (
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
        1,
        "--batch-size",
        4,
        "--quiet",
    )
    for folder in (out, reference):
        assert (
            prep(
                "run",
                "--stage",
                "manifest",
                "--dataset",
                "phoenix14t",
                "--root",
                phoenix_template,
                "--out",
                folder,
                "--quiet",
            ).exit_code
            == 0
        )
    landed = kill_and_resume(args, out, "features", seed=7)
    assert landed.count("inside a unit") >= 1 and len(landed) >= KILLS + 1, landed
    assert_units_committed_whole(out, "features")
    assert_no_temporaries(out / "shards", out / "features", out / "manifest")
    for split in SPLITS:
        folder = out / "shards" / split
        index = json.loads((folder / "index.json").read_text())
        listed = {s["url"] for s in index["shardlist"]}
        assert listed == {p.name for p in folder.glob("*.tar")} and all(
            not n.startswith(".") for n in listed
        )
        keys = Counter()
        for shard in index["shardlist"]:
            assert (
                hashlib.sha256((folder / shard["url"]).read_bytes()).hexdigest() == shard["sha256"]
            )
            keys.update(key for key, _ in iter_tar_samples(folder / shard["url"]))
        assert keys == Counter({sample_key(r["id"]): 1 for r in manifest_rows(out, split)})
    assert prep("verify", "--out", out).exit_code == 0
    assert prep(*args[:8], reference, *args[9:]).exit_code == 0
    assert published_digests(out, "shards", "features") == published_digests(
        reference, "shards", "features"
    )


def test_pseudo_glosses_survive_sigkill_anywhere(phoenix_template, tmp_path):
    out, reference = tmp_path / "out", tmp_path / "reference"

    def args(folder: Path) -> tuple:
        return (
            "run",
            "--stage",
            "pseudo-gloss",
            "--dataset",
            "phoenix14t",
            "--root",
            phoenix_template,
            "--out",
            folder,
            "--unit-size",
            1,
            "--quiet",
        )

    write_manifests(phoenix_template, out, reference)
    assert_survives_kills(args, out, reference, "pseudo-gloss", seed=11)


def write_manifests(template: Path, *folders: Path) -> None:
    for folder in folders:
        assert (
            prep(
                "run",
                "--stage",
                "manifest",
                "--dataset",
                "phoenix14t",
                "--root",
                template,
                "--out",
                folder,
                "--quiet",
            ).exit_code
            == 0
        )


def assert_survives_kills(args, out: Path, reference: Path, stage: str, seed: int) -> None:
    """Killed and resumed into ``out``: whole units, no temporaries, every sample once, and the
    same outputs as an uninterrupted run into ``reference``."""
    landed = kill_and_resume(args(out), out, stage, seed=seed)
    assert landed.count("inside a unit") >= 1, landed
    assert_units_committed_whole(out, stage)
    assert_no_temporaries(out / stage, out / "manifest")
    ids = [r["id"] for s in SPLITS for r in json_rows(out / stage / f"{s}.parquet")]
    assert sorted(ids) == sorted(r["id"] for s in SPLITS for r in manifest_rows(out, s))
    result = prep(*args(reference))
    assert result.exit_code == 0, result.output
    assert published_digests(out, stage) == published_digests(reference, stage)


def json_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def write_hand_keypoints(out: Path, folder: Path) -> None:
    """Per clip ``[T, 2, 21, 3]`` keypoints of two hands drifting across the frame (seeded)."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    for row in (r for s in SPLITS for r in manifest_rows(out, s)):
        frames = row["num_frames"]
        centre = np.array([[12.0, 30.0], [30.0, 30.0]]) + np.cumsum(
            rng.normal(0, 1.5, (frames, 2, 2)), axis=0
        )
        points = np.zeros((frames, 2, 21, 3), np.float32)
        points[..., :2] = centre[:, :, None, :] + rng.uniform(-3, 3, (frames, 2, 21, 2))
        points[..., 2] = 0.9
        np.save(folder / f"{row['id']}.npy", points)


def test_hand_captions_survive_sigkill_anywhere(phoenix_template, tmp_path):
    out, reference, keypoints = tmp_path / "out", tmp_path / "reference", tmp_path / "keypoints"
    write_manifests(phoenix_template, out, reference)
    write_hand_keypoints(out, keypoints)

    def args(folder: Path) -> tuple:
        return (
            "run",
            "--stage",
            "hand-captions",
            "--dataset",
            "phoenix14t",
            "--root",
            phoenix_template,
            "--out",
            folder,
            "--captioner",
            "kinematic",
            "--hand-keypoints",
            keypoints,
            "--chunk-frames",
            4,
            "--text-encoder",
            "none",
            "--unit-size",
            1,
            "--quiet",
        )

    assert_survives_kills(args, out, reference, "hand-captions", seed=5)
