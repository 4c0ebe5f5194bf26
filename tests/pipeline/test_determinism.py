"""Determinism: two full runs of every stage on the same inputs and settings, in separate
processes with different ``PYTHONHASHSEED``, worker counts (``--workers`` 1 vs 2) and decode
threads (``--decode-workers`` 1 vs 3), write byte-identical files: manifests, pseudo-glosses
with their vocabulary and prototypes, kinematic hand captions with their embeddings, shards
and their index, summaries, unit markers and plans.

Both runs write to the same ``--out`` path (the first is moved aside), so absolute paths
recorded in outputs are equal by construction rather than masked.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from tests.pipeline.prep_process import file_digests, prep_env, run_prep

STAGES = ("manifest", "pseudo-gloss", "hand-captions", "features")


def run_record_or_timing(relative: str) -> bool:
    """The only files allowed to differ, each a record of *how* a run went, not of its data:

    - ``runs/features-<hash>.json`` holds the resolved options of the features run, including
      ``decode_workers``, which never changes outputs (it is outside the options hash) but is
      recorded as given: 1 in one run, 3 in the other. The other stages' run records are compared.
    - ``_units/<stage>/<split>/<NNNNN>/stats.json`` holds each unit's wall-clock seconds (what
      ``prep status`` turns into clips/s).
    """
    parts = relative.split("/")
    return (parts[0] == "runs" and parts[1].startswith("features-")) or (
        parts[0] == "_units" and parts[-1] == "stats.json"
    )


def write_keypoints(root: Path, folder: Path) -> None:
    """``[20, 2, 21, 3]`` hand keypoints per Phoenix clip (more frames than any clip has)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for corpus_csv in sorted(root.rglob("PHOENIX-2014-T.*.corpus.csv")):
        for row in csv.DictReader(corpus_csv.open(encoding="utf-8"), delimiter="|"):
            points = np.zeros((20, 2, 21, 3), np.float32)
            centre = np.array([[14.0, 30.0], [28.0, 30.0]]) + np.cumsum(
                rng.normal(0, 2.0, (20, 2, 2)), axis=0
            )
            points[..., :2] = centre[:, :, None, :]
            points[..., :2] += rng.uniform(-3, 3, (20, 2, 21, 2))
            points[..., 2] = 0.9
            np.save(folder / f"{row['name']}.npy", points)


def test_every_output_is_byte_identical_across_hash_seeds_and_worker_counts(
    phoenix_template, tiny_dinov2, tmp_path
):
    keypoints = tmp_path / "keypoints"
    write_keypoints(phoenix_template, keypoints)
    out = tmp_path / "out"
    common = (
        "run",
        "--stage",
        "all",
        "--dataset",
        "phoenix14t",
        "--root",
        phoenix_template,
        "--out",
        out,
        "--dinov2",
        tiny_dinov2,
        "--hand-keypoints",
        keypoints,
        "--captioner",
        "kinematic",
        "--chunk-frames",
        4,
        "--unit-size",
        8,
        "--shard-clips",
        8,
        "--batch-size",
        16,
        "--quiet",
    )
    runs = {}
    for name, seed, workers, decode_workers in (("first", "1", 1, 1), ("second", "4242", 2, 3)):
        result = run_prep(
            *common,
            "--workers",
            workers,
            "--decode-workers",
            decode_workers,
            env=prep_env(PYTHONHASHSEED=seed),
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = Path(shutil.move(out, tmp_path / name))
    first, second = (file_digests(runs[n], run_record_or_timing) for n in ("first", "second"))
    for stage in STAGES:  # every stage really ran and published something
        assert json.loads((runs["first"] / stage / "summary.json").read_text())["stage"] == stage
    assert any(k.startswith("shards/train/") and k.endswith(".tar") for k in first)
    assert {
        "pseudo-gloss/vocab.json",
        "pseudo-gloss/prototypes.npy",
        "hand-captions/train.parquet",
        "hand-captions/train.chunks.parquet",
        "manifest/train.parquet",
        "shards/train/index.json",
    } <= set(first)
    differing = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k))
    assert not differing, differing
