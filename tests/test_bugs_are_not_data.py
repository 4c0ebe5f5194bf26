"""A bug in prep or a model error fails the unit loudly, with its traceback on disk; it never
becomes a quarantine row. Too much quarantine in a split fails the run, outputs kept."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline import synthetic
from pipeline.shards import decode_npy, iter_tar_samples
from stages.features.dinov2 import Dinov2Encoder
from stages.hands.detect import HandDetector
from tests.conftest import prep, run_generic


def shard_arrays(out, field: str) -> dict[str, np.ndarray]:
    return {
        k: decode_npy(f[field])
        for tar in (out / "shards").glob("*/*.tar")
        for k, f in iter_tar_samples(tar)
    }


def test_a_hook_error_fails_the_unit_with_its_traceback(
    generic_csv, tmp_path, tiny_dinov2, monkeypatch
):
    def broken(self, frames, info=None):
        raise RuntimeError("shape bug in preprocessing")

    monkeypatch.setattr(Dinov2Encoder, "host_prepare", broken)
    out = tmp_path / "out"
    result = run_generic("features", generic_csv, out, "--dinov2", tiny_dinov2, "--retries", 0)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("prep: error: stage features: 3 unit(s) failed") and "shape bug" in line
    error = out / "_units" / "features" / "_errors" / "train-00000.json"
    record = json.loads(error.read_text())
    assert (
        "shape bug in preprocessing" in record["traceback"]
        and "host_prepare" not in record["error"]
    )
    assert "Traceback" in record["traceback"] and str(error) in line
    assert not (out / "features" / "quarantine.parquet").exists()


def test_a_hand_detector_error_is_not_an_unreadable_clip(generic_csv, tmp_path, monkeypatch):
    def broken(self, frames, info):
        raise ValueError("landmark array has the wrong shape")

    monkeypatch.setattr(HandDetector, "detect", broken)
    out = tmp_path / "out"
    result = run_generic(
        "hand-captions",
        generic_csv,
        out,
        "--captioner",
        "kinematic",
        "--text-encoder",
        "none",
        "--retries",
        0,
    )
    assert result.exit_code == 1 and "wrong shape" in result.stderr
    assert not (out / "hand-captions" / "quarantine.parquet").exists()


def test_cuda_out_of_memory_retries_the_batch_at_half_size(
    generic_csv, tmp_path, tiny_dinov2, monkeypatch
):
    reference = tmp_path / "reference"
    flags = [
        "--dataset",
        "generic",
        "--root",
        generic_csv,
        "--dinov2",
        tiny_dinov2,
        "--quiet",
        "--batch-size",
        16,
    ]
    assert prep("run", "--stage", "features", "--out", reference, *flags).exit_code == 0
    original, sizes = Dinov2Encoder.__call__, []

    def small_memory(self, batch):
        sizes.append(len(batch))
        if len(batch) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, batch)

    monkeypatch.setattr(Dinov2Encoder, "__call__", small_memory)
    out = tmp_path / "out"
    result = prep("run", "--stage", "features", "--out", out, *flags)
    assert result.exit_code == 0, result.output
    assert 16 in sizes and 8 in sizes and max(s for s in sizes if s <= 4) == 4
    expected, got = shard_arrays(reference, "dinov2.npy"), shard_arrays(out, "dinov2.npy")
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_allclose(
            got[key].astype(np.float32), expected[key].astype(np.float32), atol=2e-2
        )


def test_a_split_over_the_quarantine_share_fails_with_its_reasons(generic_csv, tmp_path):
    clips = sorted((generic_csv.parent / "clips").glob("*.mp4"))
    clips[0].write_bytes(b"not a video")  # 1 of the 3 training clips
    out = tmp_path / "out"
    result = run_generic("manifest", generic_csv, out)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "stage manifest: split train has 33% of its samples quarantined" in line
    assert "--max-quarantine-share 0.2" in line and "unreadable_file 1" in line
    assert str(out / "manifest" / "quarantine.parquet") in line
    assert len(pq.read_table(out / "manifest" / "train.parquet")) == 2  # outputs kept
    again = run_generic("manifest", generic_csv, out, "--max-quarantine-share", 0.5)
    assert again.exit_code == 0, again.output


def test_verify_reports_each_splits_quarantine_share(generic_csv, tmp_path, tiny_dinov2):
    out = tmp_path / "out"
    flags = [
        "--dataset",
        "generic",
        "--root",
        generic_csv,
        "--out",
        out,
        "--quiet",
        "--dinov2",
        tiny_dinov2,
    ]
    assert prep("run", "--stage", "manifest", *flags).exit_code == 0
    clips = sorted((generic_csv.parent / "clips").glob("*.mp4"))
    shorter = synthetic.render_frames(3, 64, 48, "shorter")
    synthetic.write_video(
        clips[0], shorter, 25.0, (64, 48)
    )  # the file changed after the manifest counted it
    assert prep("run", "--stage", "features", *flags, "--max-quarantine-share", 0.5).exit_code == 0
    [rejected] = pq.read_table(out / "features" / "quarantine.parquet").to_pylist()
    assert rejected["reason"] == "decode_failed" and "the manifest counted" in rejected["detail"]
    result = prep("verify", "--out", out)
    assert result.exit_code == 1
    train = next(
        line for line in result.output.splitlines() if line.split()[:2] == ["features", "train"]
    )
    assert train.split()[-4:] == ["1", "(33%)", "1", "problem(s)"]
    assert (
        "features train: 1 of 3 samples quarantined (33%), over --max-quarantine-share 0.2"
        in result.output
    )
    result = prep("verify", "--out", out, "--max-quarantine-share", 0.5)
    assert result.exit_code == 0, result.output
