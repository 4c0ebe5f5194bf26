"""Stage features through the CLI: DINOv2 (tiny, random, saved with save_pretrained) into
WebDataset shards; index, checksums, frame selection, re-runs, resume, bad clips."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np

from pipeline.shards import FIXED_MTIME, decode_npy, iter_tar_samples
from stages.features import FeaturesStage
from stages.pseudo_gloss import PseudoGlossStage
from tests.conftest import copy_beside, manifest_rows, prep

WIDTH = 32  # hidden size of the tiny model


def run_features(dataset: str, root: Path, out: Path, model: Path, *extra: object):
    result = prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        dataset,
        "--root",
        root,
        "--out",
        out,
        "--dinov2",
        model,
        "--quiet",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return result


def shard_samples(out: Path, split: str) -> dict[str, dict[str, bytes]]:
    index = json.loads((out / "shards" / split / "index.json").read_text())
    samples = {}
    for shard in index["shardlist"]:
        for key, fields in iter_tar_samples(out / "shards" / split / shard["url"]):
            assert key not in samples
            samples[key] = fields
    return samples


def shard_digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "shards").rglob("*"))
        if p.is_file()
    }


def test_phoenix_shards_hold_every_manifest_sample_with_checksummed_index(
    phoenix_root, tmp_path, tiny_dinov2
):
    out = tmp_path / "out"
    run_features("phoenix14t", phoenix_root, out, tiny_dinov2)
    for split in ("train", "dev", "test"):
        rows = {r["id"]: r for r in manifest_rows(out, split)}
        index = json.loads((out / "shards" / split / "index.json").read_text())
        assert index["__kind__"] == "wids-shard-index-v1" and index["samples"] == len(rows)
        for shard in index["shardlist"]:
            path = out / "shards" / split / shard["url"]
            assert path.name.startswith(f"{split}-0000-")
            assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
            assert path.stat().st_size == shard["filesize"]
        samples = shard_samples(out, split)
        assert set(samples) == set(rows)
        for key, fields in samples.items():
            meta = json.loads(fields["json"])
            features = decode_npy(fields["dinov2.npy"])
            assert features.dtype == np.float16 and features.shape == (
                rows[key]["num_frames"],
                WIDTH,
            )
            assert np.isfinite(features).all() and features.std() > 0
            assert meta["frame_indices"] == list(range(rows[key]["num_frames"]))
            assert (
                meta["translation"] == rows[key]["translation"]
                and meta["gloss"] == rows[key]["gloss"]
            )
            assert meta["provenance"]["stages"]["features"] == FeaturesStage.version
            assert meta["provenance"]["features"]["dinov2"]["revision"].startswith("sha256:")
    with tarfile.open(next((out / "shards" / "dev").glob("*.tar"))) as tar:
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in tar} == {(FIXED_MTIME, 0, 0, 0o444)}


def test_pseudo_glosses_ride_along_when_that_stage_ran(phoenix_root, tmp_path, tiny_dinov2):
    out = tmp_path / "out"
    assert (
        prep(
            "run",
            "--stage",
            "pseudo-gloss",
            "--dataset",
            "phoenix14t",
            "--root",
            phoenix_root,
            "--out",
            out,
            "--quiet",
        ).exit_code
        == 0
    )
    run_features("phoenix14t", phoenix_root, out, tiny_dinov2)
    meta = [json.loads(f["json"]) for f in shard_samples(out, "train").values()]
    assert all(
        isinstance(m["pseudo_glosses"], list)
        and len(m["pseudo_gloss_ids"]) == len(m["pseudo_glosses"])
        for m in meta
    )
    assert any(i >= 0 for m in meta for i in m["pseudo_gloss_ids"])
    assert meta[0]["provenance"]["stages"]["pseudo-gloss"] == PseudoGlossStage.version


def test_frame_selection_sets_the_array_length(phoenix_root, tmp_path, tiny_dinov2):
    out = tmp_path / "out"
    run_features(
        "phoenix14t",
        phoenix_root,
        out,
        tiny_dinov2,
        "--frame-step",
        2,
        "--max-frames",
        4,
        "--dinov2-pooling",
        "cls+patch-mean",
    )
    rows = {r["id"]: r for r in manifest_rows(out, "dev")}
    for key, fields in shard_samples(out, "dev").items():
        selected = list(range(0, rows[key]["num_frames"], 2))
        expected = (
            [selected[round(i)] for i in np.linspace(0, len(selected) - 1, 4)]
            if len(selected) > 4
            else selected
        )
        assert json.loads(fields["json"])["frame_indices"] == expected
        assert decode_npy(fields["dinov2.npy"]).shape == (len(expected), 2 * WIDTH)


def test_csl_daily_and_size_bound_rolls_over_into_several_tars(csl_root, tmp_path, tiny_dinov2):
    out = tmp_path / "out"
    run_features("csl-daily", csl_root, out, tiny_dinov2, "--shard-size", "3KB")
    index = json.loads((out / "shards" / "train" / "index.json").read_text())
    assert len(index["shardlist"]) > 1 and all(s["nsamples"] >= 1 for s in index["shardlist"])
    names = [s["url"] for s in index["shardlist"]]
    assert names == [f"train-0000-{n:06d}.tar" for n in range(len(names))]
    samples = shard_samples(out, "train")
    assert len(samples) == index["samples"] == len(manifest_rows(out, "train"))
    assert {json.loads(f["json"])["language"] for f in samples.values()} == {"zh"}


def test_h264_clip_with_frames(tmp_path, tiny_dinov2, hand_clip):
    annotations = tmp_path / "clips.csv"
    annotations.write_text(
        f"id,path,text,language,split\nhand_clip,{copy_beside(hand_clip, tmp_path)},eine hand hebt sich,de,test\n"
    )
    out = tmp_path / "out"
    run_features("generic", annotations, out, tiny_dinov2, "--with-frames", "--frame-size", 64)
    fields = shard_samples(out, "test")["hand_clip"]
    assert decode_npy(fields["dinov2.npy"]).shape == (58, WIDTH)
    frames = sorted(k for k in fields if k.startswith("frame_"))
    assert frames == [f"frame_{i:05d}.jpg" for i in range(58)]
    image = cv2.imdecode(np.frombuffer(fields[frames[20]], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (64, 64, 3)
    assert json.loads(fields["json"])["fields"]["frame_*.jpg"] == {
        "count": 58,
        "size": [64, 64],
        "frame_geometry": "keep-aspect",
    }


def test_reruns_are_byte_identical_whatever_the_parallelism(phoenix_root, tmp_path, tiny_dinov2):
    one, two = tmp_path / "one", tmp_path / "two"
    run_features(
        "phoenix14t", phoenix_root, one, tiny_dinov2, "--decode-workers", 1, "--shard-clips", 7
    )
    run_features(
        "phoenix14t",
        phoenix_root,
        two,
        tiny_dinov2,
        "--decode-workers",
        3,
        "--shard-clips",
        7,
        "--workers",
        2,
    )
    assert shard_digests(one) == shard_digests(two)
    assert (one / "features" / "quarantine.parquet").read_bytes() == (
        two / "features" / "quarantine.parquet"
    ).read_bytes()


def test_resume_after_a_failed_unit_redoes_only_the_rest(
    phoenix_root, tmp_path, tiny_dinov2, monkeypatch
):
    reference, out = tmp_path / "reference", tmp_path / "out"
    run_features("phoenix14t", phoenix_root, reference, tiny_dinov2, "--shard-clips", 5)
    original = FeaturesStage.run

    def crash_on_third_unit(self, unit, workdir, context):
        if unit.index == 2:
            raise RuntimeError("simulated crash")
        return original(self, unit, workdir, context)

    monkeypatch.setattr(FeaturesStage, "run", crash_on_third_unit)
    failed = prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        "phoenix14t",
        "--root",
        phoenix_root,
        "--out",
        out,
        "--dinov2",
        tiny_dinov2,
        "--quiet",
        "--shard-clips",
        5,
        "--retries",
        0,
    )
    assert failed.exit_code == 1 and "simulated crash" in failed.output
    assert not (out / "shards").exists()  # nothing published before every unit is done
    done_before = {
        p: p.stat().st_mtime_ns for p in (out / "_units" / "features").rglob("_done.json")
    }
    monkeypatch.setattr(FeaturesStage, "run", original)
    run_features("phoenix14t", phoenix_root, out, tiny_dinov2, "--shard-clips", 5)
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())
    assert shard_digests(out) == shard_digests(reference)


def test_clip_broken_past_the_spot_check_is_quarantined(phoenix_root, tmp_path, tiny_dinov2):
    folder = sorted(
        (phoenix_root / "PHOENIX-2014-T" / "features" / "fullFrame-210x260px" / "dev").iterdir()
    )[0]
    frames = sorted(folder.glob("*.png"))
    middle = frames[len(frames) // 2]
    data = bytearray(middle.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16  # damaged pixel data, intact trailer
    middle.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run_features("phoenix14t", phoenix_root, out, tiny_dinov2)
    assert "decode_failed 1" in result.output
    assert folder.name not in shard_samples(out, "dev")
    assert len(shard_samples(out, "dev")) == len(manifest_rows(out, "dev")) - 1


def test_missing_model_says_what_to_place_where(phoenix_root, tmp_path):
    result = prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        "phoenix14t",
        "--root",
        phoenix_root,
        "--out",
        tmp_path / "out",
        "--dinov2",
        "nobody/no-such-dinov2",
    )
    assert result.exit_code == 1
    assert (
        "not available offline" in result.output
        and "huggingface-cli download nobody/no-such-dinov2" in result.output
    )


def test_shards_read_with_plain_webdataset(phoenix_root, tmp_path, tiny_dinov2):
    import webdataset as wds

    out = tmp_path / "out"
    run_features("phoenix14t", phoenix_root, out, tiny_dinov2)
    urls = [str(p) for p in sorted((out / "shards" / "dev").glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(samples) == len(manifest_rows(out, "dev"))
    assert samples[0]["dinov2.npy"].shape[1] == WIDTH and "translation" in samples[0]["json"]
    assert (
        np.load(io.BytesIO(shard_samples(out, "dev")[samples[0]["__key__"]]["dinov2.npy"])).shape
        == samples[0]["dinov2.npy"].shape
    )


def test_index_opens_with_wids(phoenix_root, tmp_path, tiny_dinov2):
    import wids

    out = tmp_path / "out"
    run_features("phoenix14t", phoenix_root, out, tiny_dinov2, "--shard-clips", 3)
    dataset = wids.ShardListDataset(
        str(out / "shards" / "dev" / "index.json"),
        transformations=[],
        cache_dir=str(tmp_path / "wids-cache"),
    )
    assert len(dataset) == len(manifest_rows(out, "dev"))
    last = dataset[len(dataset) - 1]
    assert (
        np.load(last[".dinov2.npy"]).shape[1] == WIDTH
        and json.load(last[".json"])["split"] == "dev"
    )
