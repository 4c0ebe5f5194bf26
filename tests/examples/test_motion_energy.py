"""The example plug-in ``examples/motion_energy``, installed with pip as a lab would install it,
runs through every command: its stage (a per-frame exported column, an option, a doctor check, a
report section) and its exporter, with no framework file edited.

The package is built and installed into a temporary folder that the ``prep`` processes get on
``PYTHONPATH``, as ``pip install -e examples/motion_energy`` puts it in an environment. The
corpus is synthetic Phoenix14T with one clip made still (every frame a copy of its first), so
``--min-motion`` has a clip to quarantine, and the values are checked against the clips' own
frames decoded here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import synthetic
from pipeline.lineage import StaleOutputs
from pipeline.loader import make_loader
from pipeline.video import FrameSelection, sample_frames
from tests.conftest import REPO
from tests.pipeline.prep_process import prep_env, run_prep

EXAMPLE = REPO / "examples" / "motion_energy"
STAGE = "motion-energy"
STILL = "synth00000"  # a train clip whose frames are all its first one
MIN_MOTION = 0.1  # grey levels: the moving synthetic clips measure 0.5 and more
FRAMES_DIR = "PHOENIX-2014-T/features/fullFrame-210x260px"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The example installed by pip (no network, no build isolation) into a fresh folder."""
    folder = tmp_path_factory.mktemp("motion_plugin")
    source = Path(shutil.copytree(EXAMPLE, folder / "source"))  # the build writes beside it
    site = folder / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    install += ["--no-index", "--quiet", "--target", str(site), str(source)]
    done = subprocess.run(install, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return prep_env(PYTHONPATH=path)


def write_corpus(folder: Path) -> Path:
    """Ten short synthetic clips; :data:`STILL` frozen on its first frame."""
    samples = synthetic.default_samples("de", clips=10, frames=(8, 14))
    root = synthetic.write_phoenix14t(folder, samples, size=(42, 52))
    frames = sorted((root / FRAMES_DIR / "train" / STILL).glob("*.png"))
    for frame in frames[1:]:
        shutil.copyfile(frames[0], frame)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("motion_corpus"))


def flags(root: Path, out: Path) -> list[object]:
    return ["--dataset", "phoenix14t", "--root", root, "--out", out, "--quiet"]


def prepare(env: dict, root: Path, out: Path, dinov2: Path, min_motion: float) -> None:
    """``motion-energy`` (the manifest first, as it requires), then ``features``."""
    limits = ["--min-motion", min_motion, "--max-quarantine-share", 1]
    motion = run_prep("run", "--stage", STAGE, *flags(root, out), *limits, env=env)
    assert motion.returncode == 0, motion.stderr
    features = run_prep(
        "run", "--stage", "features", *flags(root, out), "--dinov2", dinov2, env=env
    )
    assert features.returncode == 0, features.stderr


@pytest.fixture(scope="module")
def prepared(plugin_env, corpus, tiny_dinov2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("motion_run") / "out"
    prepare(plugin_env, corpus, out, tiny_dinov2, MIN_MOTION)
    return out


def table(out: Path, stage: str, split: str) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(out / stage / f"{split}.parquet").to_pylist()}


def shard_samples(out: Path, split: str) -> list[dict]:
    """Every sample of a split's shards, in order: its json, and its arrays by field name."""
    samples: dict[str, dict] = {}
    for shard in sorted((out / "shards" / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, field = member.name.partition(".")
                data = tar.extractfile(member).read()
                sample = samples.setdefault(key, {"arrays": {}})
                if field == "json":
                    sample["json"] = json.loads(data)
                else:
                    sample["arrays"][field] = np.load(io.BytesIO(data))
    return list(samples.values())


def frames_motion(root: Path, out: Path, row: dict) -> np.ndarray:
    """A clip's motion recomputed here from its selected frames, all at once: grey levels'
    mean absolute difference from the previous selected frame, 0 for the first."""
    manifest = out / "manifest" / f"{row['split']}.parquet"
    recorded = json.loads(pq.read_schema(manifest).metadata[b"prep"])
    selection = FrameSelection(**recorded["frame_selection"])
    clips = list(sample_frames(root / "PHOENIX-2014-T", row, selection))
    frames = np.concatenate([c.frames for c in clips])
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)
    changes = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[0.0], changes]).astype(np.float32)


def test_every_command_offers_the_example(plugin_env):
    run_help = run_prep("run", "--help", env=plugin_env)
    assert run_help.returncode == 0, run_help.stderr
    assert f"Stage {STAGE}" in run_help.stdout and "--min-motion" in run_help.stdout
    for command in ("doctor", "plan"):
        assert "--min-motion" in run_prep(command, "--help", env=plugin_env).stdout
    formats = run_prep("exports", env=plugin_env)
    assert formats.returncode == 0 and "motion-csv" in formats.stdout


def test_doctor_runs_the_examples_check(plugin_env, tmp_path):
    fine = run_prep("doctor", "--stage", STAGE, "--min-motion", 0.5, env=plugin_env)
    [line] = [x for x in fine.stdout.splitlines() if x.startswith(f"{STAGE}  --min-motion")]
    assert " ok " in line and "0.5 grey levels" in line
    broken = run_prep(
        "doctor", "--stage", STAGE, "--min-motion", 0.5, "--max-frames", 1, env=plugin_env
    )
    assert broken.returncode == 1
    assert f"prep: missing: {STAGE} --min-motion: select at least 2 frames per clip" in (
        broken.stderr
    )
    refused = run_prep(
        "run",
        "--stage",
        STAGE,
        "--min-motion",
        -1,
        *flags(tmp_path, tmp_path / "o"),
        env=plugin_env,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last == "prep: error: --min-motion: expected at least 0.0, got -1.0"


def test_the_stage_measures_each_clips_own_frames(prepared, corpus):
    rejected = pq.read_table(prepared / STAGE / "quarantine.parquet").to_pylist()
    assert [(r["id"], r["reason"], r["stage"]) for r in rejected] == [(STILL, "still_clip", STAGE)]
    assert f"is below --min-motion {MIN_MOTION:g}" in rejected[0]["detail"]
    for split in ("train", "dev", "test"):
        kept = table(prepared, STAGE, split)
        for row in table(prepared, "manifest", split).values():
            expected = frames_motion(corpus, prepared, row)
            if row["id"] == STILL:
                assert not expected.any() and STILL not in kept
                continue
            assert expected.mean() > MIN_MOTION
            measured = np.asarray(kept[row["id"]]["motion"], np.float32)
            np.testing.assert_allclose(measured, expected, rtol=1e-5, atol=1e-6)
            assert kept[row["id"]]["motion_mean"] == pytest.approx(float(measured.mean()))


def test_the_shards_carry_motion_per_frame_and_say_what_is_missing(prepared):
    for split in ("train", "dev", "test"):
        kept = table(prepared, STAGE, split)
        for sample in shard_samples(prepared, split):
            meta, arrays = sample["json"], sample["arrays"]
            if meta["id"] == STILL:
                assert "motion.npy" not in arrays and meta["motion_mean"] is None
                assert meta["missing"]["motion"].startswith(f"{STAGE}: still_clip")
                assert meta["missing"]["motion_mean"].startswith(f"{STAGE}: still_clip")
                continue
            row = kept[meta["id"]]
            motion = arrays["motion.npy"]
            assert motion.dtype == np.float32 and motion.shape == (len(meta["frame_indices"]),)
            assert motion.tolist() == row["motion"] and meta["motion_mean"] == row["motion_mean"]
            assert meta["provenance"]["stages"][STAGE] == 1


def test_verify_status_report_and_plan_handle_it(prepared, plugin_env):
    verify = run_prep("verify", "--out", prepared, "--max-quarantine-share", 1, env=plugin_env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rows = [line.split() for line in verify.stdout.splitlines() if line.startswith(STAGE)]
    assert [r[1] for r in rows] == ["train", "dev", "test"] and {r[-1] for r in rows} == {"ok"}

    status = run_prep("status", "--out", prepared, env=plugin_env)
    assert status.returncode == 0, status.stderr
    assert f"{STAGE}  done" in status.stdout.replace("   ", "  ")
    assert "still_clip 1" in status.stdout

    report = run_prep("report", "--out", prepared, env=plugin_env)
    assert report.returncode == 0, report.stderr
    page = (prepared / "report" / "index.html").read_text()
    assert f'id="{STAGE}"' in page and "still_clip" in page and 'id="plot-motion"' in page

    plan = run_prep("plan", "--out", prepared, "--stage", STAGE, "--pilot-clips", 2, env=plugin_env)
    assert plan.returncode == 0, plan.stderr
    [row] = [line for line in plan.stdout.splitlines() if line.startswith(STAGE)]
    assert "s/frame" in row


def test_the_exporter_writes_each_splits_csv_from_the_shards(prepared, plugin_env, tmp_path):
    written = {}
    for name in ("first", "second"):
        target = tmp_path / name
        result = run_prep(
            "export", "--format", "motion-csv", "--out", prepared, "--to", target, env=plugin_env
        )
        assert result.returncode == 0, result.stderr
        written[name] = {p.name: p.read_bytes() for p in sorted(target.glob("*.csv"))}
    assert written["first"] == written["second"] and len(written["first"]) == 3
    for split in ("train", "dev", "test"):
        rows = list(csv.DictReader(io.StringIO(written["first"][f"{split}.csv"].decode())))
        samples = shard_samples(prepared, split)
        assert [r["id"] for r in rows] == [s["json"]["id"] for s in samples]
        for row, sample in zip(rows, samples):
            motion = sample["arrays"].get("motion.npy")
            if motion is None:
                assert row["id"] == STILL and row["motion_mean"] == row["frames"] == ""
            else:
                assert float(row["motion_mean"]) == sample["json"]["motion_mean"]
                assert int(row["frames"]) == len(motion)


def test_the_loader_reads_motion_by_default_and_says_where_it_is_missing(prepared):
    loader = make_loader(prepared, "train", batch_size=16, num_workers=0, train=False)
    [batch] = list(loader)
    kept = table(prepared, STAGE, "train")
    ids = [meta["id"] for meta in batch["json"]]
    assert "motion" in batch and ids
    present = batch["present"]["motion"].tolist()
    assert present == [i != STILL for i in ids]
    for position, sample_id in enumerate(ids):
        motion = batch["motion"][position].numpy()
        length = int(batch["lengths"][position])
        if sample_id == STILL:
            assert not motion.any()
        else:
            assert motion[:length].tolist() == kept[sample_id]["motion"]


def test_a_clip_that_no_longer_decodes_is_quarantined_and_shards_without_motion_are_refused(
    plugin_env, tiny_dinov2, tmp_path
):
    """Shards packed before the plug-in ran hold no motion: the exporter refuses them in one
    line. A clip changed on disk since the manifest counted it is a quarantine row, not a crash."""
    root, out = write_corpus(tmp_path / "corpus"), tmp_path / "out"
    run = ["run", "--stage", "features", *flags(root, out), "--dinov2", tiny_dinov2]
    assert run_prep(*run, env=plugin_env).returncode == 0  # the manifest, then features
    export = run_prep(
        "export", "--format", "motion-csv", "--out", out, "--to", tmp_path / "csv", env=plugin_env
    )
    assert export.returncode == 1 and "Traceback" not in export.stderr
    assert export.stderr.strip().splitlines()[-1] == (
        "prep: error: motion-csv: the train shards hold no motion field (packed without "
        f"{STAGE}); run --stage {STAGE}, then --stage features --overwrite"
    )
    frames = sorted((root / FRAMES_DIR / "train" / "synth00001").glob("*.png"))
    frames[-1].unlink()
    limits = ["--max-quarantine-share", 1]
    motion = run_prep("run", "--stage", STAGE, *flags(root, out), *limits, env=plugin_env)
    assert motion.returncode == 0, motion.stderr
    rejected = pq.read_table(out / STAGE / "quarantine.parquet").to_pylist()
    assert [(r["id"], r["reason"]) for r in rejected] == [("synth00001", "decode_failed")]
    detail = rejected[0]["detail"]
    assert f"{len(frames) - 1} frames now, the manifest counted {len(frames)}" in detail
    assert STILL in table(out, STAGE, "train")  # --min-motion 0: a still clip is kept


def test_rerunning_the_plugin_makes_features_stale_until_it_is_redone(
    plugin_env, corpus, prepared, tiny_dinov2, tmp_path
):
    out = tmp_path / "out"
    prepare(plugin_env, corpus, out, tiny_dinov2, MIN_MOTION)
    assert digests(out) == digests(prepared)  # same inputs and options: the same bytes

    rerun = ["run", "--stage", STAGE, *flags(corpus, out), "--overwrite", "--min-motion", 0]
    redone = run_prep(*rerun, env=plugin_env)
    assert redone.returncode == 0, redone.stderr
    assert f"features is now stale ({STAGE} was rerun" in redone.stderr
    status = run_prep("status", "--out", out, env=plugin_env)
    [line] = [x for x in status.stdout.splitlines() if x.split()[:2] == ["features", "stale:"]]
    assert f"{STAGE} was rerun with other options after it" in line
    verify = run_prep("verify", "--out", out, "--max-quarantine-share", 1, env=plugin_env)
    assert verify.returncode == 1 and f"{STILL}: motion differs from its table" in verify.stdout
    export = run_prep(
        "export", "--format", "motion-csv", "--out", out, "--to", tmp_path / "csv", env=plugin_env
    )
    assert export.returncode == 1
    [line] = export.stderr.strip().splitlines()[-1:]
    assert line.startswith("prep: error: ") and f"features is stale ({STAGE}" in line
    with pytest.raises(StaleOutputs, match=f"features is stale \\({STAGE}") as refused:
        make_loader(out, "train", num_workers=0)
    assert "\n" not in str(refused.value)

    features = ["run", "--stage", "features", *flags(corpus, out), "--dinov2", tiny_dinov2]
    again = run_prep(*features, "--overwrite", env=plugin_env)
    assert again.returncode == 0, again.stderr
    verify = run_prep("verify", "--out", out, "--max-quarantine-share", 1, env=plugin_env)
    assert verify.returncode == 0, verify.stdout
    status = run_prep("status", "--out", out, env=plugin_env)
    assert "stale" not in status.stdout
    export = run_prep(
        "export", "--format", "motion-csv", "--out", out, "--to", tmp_path / "csv", env=plugin_env
    )
    assert export.returncode == 0, export.stderr
    rows = {r["id"]: r for r in csv.DictReader((tmp_path / "csv" / "train.csv").open())}
    assert rows[STILL]["motion_mean"] == "0.0" and int(rows[STILL]["frames"]) > 1
    [batch] = list(make_loader(out, "train", batch_size=16, num_workers=0, train=False))
    assert all(batch["present"]["motion"].tolist())  # the still clip is kept now


def digests(out: Path) -> dict[str, str]:
    """sha256 of the plug-in's tables and of every shard: what a trainer would read."""
    files = [*sorted((out / STAGE).glob("*.parquet")), *sorted((out / "shards").rglob("*.tar"))]
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }
