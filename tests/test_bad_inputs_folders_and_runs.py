"""Bad frame folders, symbolic link loops under ``--root`` and bad run settings, through the CLI.

Frame folders: two numbered sequences in one folder are quarantined (``ambiguous_frames``), an
unnumbered image is never a frame, system files (``._*``, ``.DS_Store``, ``Thumbs.db``) are
ignored; every good sample is still written. A symbolic link loop under each corpus's root
finishes (each real folder is walked once). A config value of the wrong type or range, and a
launcher variable that is not a number, are one error line each (exit 1), never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import manifest as m
from pipeline import synthetic
from pipeline.video import FrameFolderSource
from stages.manifest.finder import FileIndex
from tests.conftest import manifest_rows, prep, quarantine_rows, run_generic
from tests.corpora import autsl, how2sign, openasl, wlasl, youtube_asl
from tests.pipeline.prep_process import prep_env, run_prep
from tests.test_bad_inputs import write_clip, write_frame_folder

FRAMES = 6
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # an AppleDouble header


def write_thumbnail(path: Path) -> None:
    """A valid PNG of another size: were it taken as a frame, the frame size would change."""
    cv2.imwrite(str(path), np.full((16, 16, 3), 200, np.uint8))


def write_folder_corpus(root: Path) -> Path:
    """A generic corpus: a good video, good folders, and a folder per frame-folder trap."""
    write_clip(root / "clips" / "vid_a.mp4", 8)
    frames = root / "frames"
    write_frame_folder(frames / "clean", FRAMES, "images{:04d}.png", 1)
    junk = frames / "junk"
    shutil.copytree(frames / "clean", junk)
    (junk / "._images0001.png").write_bytes(APPLE_DOUBLE)
    (junk / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (junk / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    thumb = frames / "thumb"
    shutil.copytree(frames / "clean", thumb)
    write_thumbnail(thumb / "thumbnail.png")
    write_frame_folder(frames / "thumb_gap", FRAMES, "images{:04d}.png", 1)[3].unlink()
    write_thumbnail(frames / "thumb_gap" / "thumbnail.png")
    write_frame_folder(frames / "two_cams", FRAMES, "cam1_{:04d}.png", 1)
    for path in write_frame_folder(frames / "cam2", FRAMES, "cam2_{:04d}.png", 1):
        shutil.move(path, frames / "two_cams" / path.name)
    write_frame_folder(frames / "two_cams_apart", 3, "cam1_{:04d}.png", 1)
    for path in write_frame_folder(frames / "cam2b", 3, "cam2_{:04d}.png", 4):
        shutil.move(path, frames / "two_cams_apart" / path.name)
    twice = write_frame_folder(frames / "twice", FRAMES, "images{:04d}.png", 1)
    shutil.copy(twice[2], twice[2].with_name("images003.png"))
    (frames / "unnumbered").mkdir()
    for name in ("first.png", "second.png"):
        write_thumbnail(frames / "unnumbered" / name)
    rows = [
        "vid_a,clips/vid_a.mp4,ein video,de,train,",
        "clean,frames/clean,saubere bilder,de,train,25",
        "junk,frames/junk,mit systemdateien,de,train,25",
        "thumb,frames/thumb,mit vorschaubild,de,dev,25",
        "thumb_gap,frames/thumb_gap,vorschaubild und luecke,de,dev,25",
        "two_cams,frames/two_cams,zwei kameras,de,train,25",
        "two_cams_apart,frames/two_cams_apart,zwei kameras nacheinander,de,train,25",
        "twice,frames/twice,eine nummer zweimal,de,test,25",
        "unnumbered,frames/unnumbered,ohne nummern,de,test,25",
    ]
    csv_path = root / "corpus.csv"
    csv_path.write_text("\n".join(["id,path,text,language,split,fps", *rows]) + "\n")
    return csv_path


def test_frame_folder_traps_are_quarantined_and_system_files_ignored(tmp_path):
    csv_path = write_folder_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    result = run_generic("manifest", csv_path, out, "--max-quarantine-share", 1)
    assert result.exit_code == 0, result.output
    found = {q["id"]: (q["reason"], q["detail"]) for q in quarantine_rows(out)}
    assert found == {
        "two_cams": (
            m.AMBIGUOUS_FRAMES,
            "two numbered sequences in one folder: cam1_0001.png and cam2_0001.png",
        ),
        "two_cams_apart": (
            m.AMBIGUOUS_FRAMES,
            "two numbered sequences in one folder: cam1_0001.png and cam2_0004.png",
        ),
        "twice": (m.AMBIGUOUS_FRAMES, "frame number 3 twice: images0003.png and images003.png"),
        "thumb_gap": (m.FRAME_GAP, "1 frame number(s) missing: 4"),
        "unnumbered": (m.MISSING_FRAMES, "no numbered frame images at frames/unnumbered"),
    }
    rows = {r["id"]: r for split in ("train", "dev") for r in manifest_rows(out, split)}
    assert set(rows) == {"vid_a", "clean", "junk", "thumb"}
    for name in ("junk", "thumb"):  # the same frames as the clean folder: names, sizes, bytes
        assert rows[name]["num_frames"] == FRAMES
        assert (rows[name]["width"], rows[name]["height"]) == (48, 40)
        assert rows[name]["fingerprint"] == rows["clean"]["fingerprint"]
        source = FrameFolderSource(csv_path.parent / "frames" / name, fps=25)
        expected = np.stack(list(synthetic.render_frames(FRAMES, 48, 40, "clean")))
        np.testing.assert_array_equal(source.read(range(FRAMES)), expected)


SYMLINK_CORPORA = {
    "how2sign": lambda folder: how2sign.write_how2sign(folder),
    "openasl": lambda folder: openasl.write_openasl(folder),
    "youtube-asl": lambda folder: youtube_asl.write_youtube_asl(
        folder, youtube_asl.default_videos()
    ),
    "wlasl": lambda folder: wlasl.write_wlasl(folder, wlasl.default_instances()),
    "autsl": lambda folder: autsl.write_autsl(folder, autsl.default_samples()),
}


def manifest_outputs(out: Path) -> tuple[dict, list]:
    written = {
        split: [(r["id"], r["source_path"]) for r in manifest_rows(out, split)]
        for split in ("train", "dev", "test")
        if (out / "manifest" / f"{split}.parquet").exists()
    }
    return written, sorted((q["id"], q["reason"]) for q in quarantine_rows(out))


@pytest.mark.parametrize("dataset", sorted(SYMLINK_CORPORA))
def test_a_symlink_loop_under_the_root_finishes_with_the_same_manifest(dataset, tmp_path):
    root = SYMLINK_CORPORA[dataset](tmp_path / "corpus")
    args = ("run", "--stage", "manifest", "--dataset", dataset, "--root", root, "--quiet")
    clean = prep(*args, "--out", tmp_path / "clean", "--max-quarantine-share", 1)
    assert clean.exit_code == 0, clean.output
    (root / "l1").symlink_to(".")  # ln -s . l1; ln -s . l2
    (root / "l2").symlink_to(".")
    deeper = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())[0]
    (deeper / "up").symlink_to("..")
    # a separate process with a time limit: a walk that loops fails here instead of hanging
    looped = run_prep(*args, "--out", tmp_path / "looped", "--max-quarantine-share", 1, timeout=120)
    assert looped.returncode == 0, looped.stderr[-2000:]
    assert manifest_outputs(tmp_path / "looped") == manifest_outputs(tmp_path / "clean")


def test_the_file_index_skips_keypoint_folders_and_system_files(tmp_path):
    keypoints = tmp_path / "train" / "rgb_front" / "features" / "openpose_output" / "json" / "a"
    keypoints.mkdir(parents=True)
    (keypoints / "a_000000000000_keypoints.json").write_text("{}")
    pose = tmp_path / "data" / "pose_per_individual_videos" / "00001"
    pose.mkdir(parents=True)
    (pose / "image_00001_keypoints.json").write_text("{}")
    (tmp_path / "data" / "WLASL_v0.3.json").write_text("[]")
    (tmp_path / "data" / "._WLASL_v0.3.json").write_bytes(APPLE_DOUBLE)
    (tmp_path / "twin").symlink_to(tmp_path / "data")  # the same folder twice: indexed once
    index = FileIndex(tmp_path, suffixes=(".json",))
    assert index.by_name == {"WLASL_v0.3.json": [tmp_path / "data" / "WLASL_v0.3.json"]}
    everything = FileIndex(tmp_path, skip_folders=())
    assert "image_00001_keypoints.json" in everything.by_name


def generic_corpus(tmp_path: Path) -> Path:
    """Two small clips in the generic layout; returns the CSV."""
    samples = synthetic.default_samples("de", 2, (4, 5))
    return synthetic.write_generic(tmp_path / "corpus", samples, "de", size=(32, 24))


CONFIG_ERRORS = [
    ("c.yaml", "max_frames: lots\n", "config key max_frames: expected an integer, got 'lots'"),
    ("c.toml", "unit_size = 1e400\n", "config key unit_size: expected an integer, got inf"),
    ("c.yaml", "unit_size: 1e400\n", "config key unit_size: expected an integer, got '1e400'"),
    ("c.json", '{"fps": 1e400}', "config key fps: expected a finite number, got inf"),
    ("c.toml", "[max_frames]\nx = 1\n", "config key max_frames: expected an integer, got a table"),
    ("c.yaml", 'overwrite: "false"\n', "config key overwrite: expected true or false, got 'false'"),
    ("c.toml", "workers = -2\n", "config key workers: expected at least 1, got -2"),
    ("c.json", '{"retries": true}', "config key retries: expected an integer, got True"),
    ("c.yaml", "sampling: [uniform]\n", "config key sampling: expected a string, got a list"),
    (
        "c.yaml",
        "max_quarantine_share: 5\n",
        "config key max_quarantine_share: expected at most 1, got 5",
    ),
    ("c.yaml", "retries: null\n", "config key retries: expected an integer, got nothing (null)"),
]


@pytest.mark.parametrize(("name", "text", "line"), CONFIG_ERRORS)
def test_a_config_value_of_the_wrong_type_or_range_is_one_error_line(tmp_path, name, text, line):
    corpus = generic_corpus(tmp_path)
    config = tmp_path / name
    config.write_text(text)
    out = tmp_path / "out"
    result = run_generic("manifest", corpus, out, "--config", config)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"prep: error: {line}"]
    assert not (out / "manifest").exists()


def test_config_values_of_the_right_type_are_taken(tmp_path):
    corpus = generic_corpus(tmp_path)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"max_frames": 3, "fps": 25, "overwrite": False, "workers": 1}))
    out = tmp_path / "out"
    result = run_generic("manifest", corpus, out, "--config", config)
    assert result.exit_code == 0, result.output
    written = [p for p in (out / "manifest").glob("*.parquet") if p.stem != "quarantine"]
    assert sum(len(manifest_rows(out, p.stem)) for p in written) == 2


LAUNCHER_ERRORS = [
    ({"RANK": "abc", "WORLD_SIZE": "2"}, "environment variable RANK must be an integer, got 'abc'"),
    ({"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE must be an integer, got 'two'"),
    (
        {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
        "environment variable SLURM_ARRAY_TASK_ID must be an integer, got 'x'",
    ),
    (
        {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": ""},
        "environment variable SLURM_ARRAY_TASK_MIN must be an integer, got ''",
    ),
    ({"LOCAL_RANK": "gpu0"}, "environment variable LOCAL_RANK must be an integer, got 'gpu0'"),
    ({"PREP_WORKERS": "-2"}, "environment variable PREP_WORKERS must be at least 1, got '-2'"),
    (  # read before the process group is joined: no rank waits for this one
        {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "LOCAL_WORLD_SIZE": "8x"},
        "environment variable LOCAL_WORLD_SIZE must be an integer, got '8x'",
    ),
    (
        {"PREP_DIST_TIMEOUT": "soon"},
        "environment variable PREP_DIST_TIMEOUT must be a number, got 'soon'",
    ),
]


@pytest.mark.parametrize(("env", "line"), LAUNCHER_ERRORS)
def test_a_launcher_variable_that_is_not_a_number_is_one_error_line(
    tmp_path, monkeypatch, env, line
):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    corpus = generic_corpus(tmp_path)
    result = run_generic("manifest", corpus, tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"prep: error: {line}"]


def test_an_unknown_log_level_is_one_error_line(tmp_path):
    result = run_prep("recipes", env=prep_env(PREP_LOG_LEVEL="loud"), timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "prep: error: environment variable PREP_LOG_LEVEL must be one of "
        "DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'"
    ]
