"""``prep export --format signjoey`` read back the way neccam/slt reads it."""

from __future__ import annotations

import gzip
import json
import pickle

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from pipeline.shards import decode_npy, iter_tar_samples
from tests.conftest import prep


def load_dataset_file(filename):
    """signjoey/dataset.py:13-16, as its authors wrote it (our own files: trusted here)."""
    with gzip.open(filename, "rb") as f:
        return pickle.load(f)


def signjoey_samples(paths: list) -> dict[str, dict]:
    """signjoey/dataset.py:54-74: streams joined by name, ``sign`` concatenated on dim 1."""
    samples = {}
    for annotation_file in paths:
        for s in load_dataset_file(annotation_file):
            seq_id = s["name"]
            if seq_id in samples:
                assert samples[seq_id]["text"] == s["text"]
                samples[seq_id]["sign"] = torch.cat([samples[seq_id]["sign"], s["sign"]], axis=1)
            else:
                samples[seq_id] = dict(s)
    return samples


def shard_features(out, split: str, field: str) -> dict[str, np.ndarray]:
    found = {}
    for tar in sorted((out / "shards" / split).glob("*.tar")):
        for _key, fields in iter_tar_samples(tar):
            meta = json.loads(fields["json"])
            found[meta["id"]] = decode_npy(fields[f"{field}.npy"])
    return found


def test_signjoey_reads_every_split_with_texts_and_features(prepared_phoenix, tmp_path):
    target = tmp_path / "signjoey"
    result = prep("export", "--format", "signjoey", "--out", prepared_phoenix, "--to", target)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((target / "signjoey-data.yaml").read_text())["data"]
    assert config["feature_size"] == 32  # the tiny DINOv2's width
    for split in ("train", "dev", "test"):
        path = target / config[split]
        samples = signjoey_samples([path])
        manifest = pq.read_table(prepared_phoenix / "manifest" / f"{split}.parquet").to_pylist()
        assert sorted(samples) == sorted(f"{split}/{row['id']}" for row in manifest)
        features = shard_features(prepared_phoenix, split, "dinov2")
        for row in manifest:
            sample = samples[f"{split}/{row['id']}"]
            assert sample["text"] == row["translation"] and sample["gloss"] == row["gloss"]
            assert sample["signer"] == row["signer"]
            assert sample["sign"].dtype == torch.float32
            assert sample["sign"].shape == (row["num_frames"], config["feature_size"])
            np.testing.assert_array_equal(
                sample["sign"].numpy(), features[row["id"]].astype(np.float32)
            )
            assert torch.isfinite(sample["sign"] + 1e-8).all()  # dataset.py:85
    assert "python -m signjoey train" in (target / "EXPORT.md").read_text()


def test_exports_are_byte_identical_and_resume_or_refuse(prepared_phoenix, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for target in (first, second):
        assert (
            prep(
                "export", "--format", "signjoey", "--out", prepared_phoenix, "--to", target
            ).exit_code
            == 0
        )
    for path in sorted(first.iterdir()):
        if path.name not in ("EXPORT.md", "signjoey-data.yaml", ".prep-export.json"):
            assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    other = prep(
        "export",
        "--format",
        "signjoey",
        "--out",
        prepared_phoenix,
        "--to",
        first,
        "--splits",
        "dev",
    )
    assert other.exit_code == 1 and "pass --overwrite" in other.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = prep("export", "--format", "signjoey", "--out", prepared_phoenix, "--to", foreign)
    assert refused.exit_code == 1 and "is not empty" in refused.output
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_missing_field_is_named_before_anything_is_written(prepared_phoenix, tmp_path):
    target = tmp_path / "missing"
    export = ["export", "--format", "signjoey", "--out", prepared_phoenix, "--to", target]
    result = prep(*export, "--fields", "hamer")
    assert result.exit_code == 1
    assert "hold no hamer field" in result.output and not target.exists()
