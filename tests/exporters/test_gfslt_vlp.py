"""``prep export --format gfslt-vlp`` read back the way zhoubenjia/GFSLT-VLP (91ba953) reads it."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline import synthetic
from pipeline.shards import iter_tar_samples
from tests.conftest import one_clip_csv, prep, run_generic

SPLITS = ("train", "dev", "test")


def load_dataset_file(filename):
    """utils.py:297-300 of GFSLT-VLP, as its authors wrote it (our own files: trusted here)."""
    with gzip.open(filename, "rb") as f:
        return pickle.load(f)


def read_split(config: dict, split: str) -> dict[str, tuple]:
    """datasets.py:63-111,130-133: keys listed, each sample's text, length, name and images read
    with ``cv2.imread(img_path + x)`` (no glob: the names listed are the files opened), RGB."""
    raw_data = load_dataset_file(config[f"{split}_label_path"])
    read = {}
    for key in [key for key, value in raw_data.items()]:
        sample = raw_data[key]
        paths = [config["img_path"] + x for x in sample["imgs_path"]]
        images = [cv2.imread(path) for path in paths]
        images = [None if i is None else cv2.cvtColor(i, cv2.COLOR_BGR2RGB) for i in images]
        read[key] = (sample["name"], sample["text"], sample["gloss"], sample["length"], images)
    return read


def loader_resize(image: np.ndarray) -> np.ndarray:
    """datasets.py:133,140 with --resize 256 (train_slt.py:157): ``img.resize((256, 256))``,
    as the Pillow of GFSLT-VLP's time (before 13) runs it: the horizontal pass first, then the
    vertical one (Pillow 13 may swap them, python-pillow/Pillow#9549)."""
    img = Image.fromarray(image)
    if img.size[0] != 256:
        img = img.resize((256, img.size[1]), Image.Resampling.BICUBIC)
    return np.asarray(img.resize((256, 256), Image.Resampling.BICUBIC))


def whole_frames(video: Path) -> list[np.ndarray]:
    """Every frame of ``video`` as OpenCV decodes it, RGB: what a frame extractor would save."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def export(prepared, target):
    result = prep("export", "--format", "gfslt-vlp", "--out", prepared, "--to", target)
    assert result.exit_code == 0, result.output
    return yaml.safe_load((target / "gfslt-vlp-data.yaml").read_text())["data"]


def manifest(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / "manifest" / f"{split}.parquet").to_pylist()


def test_frame_folders_are_pointed_at_where_they_are(prepared_phoenix, tmp_path):
    config = export(prepared_phoenix, tmp_path / "gfslt")
    assert config["img_path"].endswith("/") and not (tmp_path / "gfslt" / "frames").exists()
    for split in SPLITS:
        rows = manifest(prepared_phoenix, split)
        read = read_split(config, split)
        assert list(read) == [f"{split}/{row['id']}" for row in rows]  # manifest order
        for row in rows:
            name, text, gloss, length, images = read[f"{split}/{row['id']}"]
            assert name == f"{split}/{row['id']}" and text == row["translation"]
            assert gloss == row["gloss"] and length == row["num_frames"] == len(images)
            assert all(image is not None and image.shape == (52, 42, 3) for image in images)
    first = load_dataset_file(config["dev_label_path"])
    paths = next(iter(first.values()))["imgs_path"]
    assert paths == sorted(paths) and paths[0].endswith("images0001.png")  # frame order
    assert "None known." in (tmp_path / "gfslt" / "EXPORT.md").read_text()  # its own frames


@pytest.fixture(scope="module")
def video_runs(tmp_path_factory, tiny_dinov2) -> dict:
    """A portrait (48x64) video corpus prepared twice: with the frames stored (64 px,
    keep-aspect) and as a manifest alone that keeps every second frame. Both are exported from
    the corpus's own files, then the corpus is moved away."""
    folder = tmp_path_factory.mktemp("gfslt-videos")
    samples = synthetic.default_samples("de", clips=6, frames=(6, 12))
    corpus = synthetic.write_generic(folder / "corpus", samples, "de", size=(48, 64))
    runs = {"frames": folder / "frames", "strided": folder / "strided"}
    stored = ("--dinov2", tiny_dinov2, "--with-frames", "--frame-size", 64)
    assert run_generic("manifest", corpus, runs["frames"]).exit_code == 0
    result = run_generic("features", corpus, runs["frames"], *stored)
    assert result.exit_code == 0, result.output
    assert run_generic("manifest", corpus, runs["strided"], "--frame-step", 2).exit_code == 0
    for name in ("frames", "strided"):
        runs[f"{name}-export"] = folder / f"{name}-export"
        runs[f"{name}-config"] = export(runs[name], runs[f"{name}-export"])
    runs["again"] = folder / "again"
    export(runs["frames"], runs["again"])
    originals = {}
    for row in (r for split in SPLITS for r in manifest(runs["frames"], split)):
        originals[row["id"]] = whole_frames(corpus.parent / row["source_path"])
    runs["originals"] = originals
    shutil.move(corpus.parent, folder / "moved")
    return runs


def test_video_frames_are_whole_frames_squashed_as_the_loader_squashes_them(video_runs):
    config = video_runs["frames-config"]
    assert config["img_path"] == f"{video_runs['frames-export'] / 'frames'}/"
    for split in SPLITS:
        labels = load_dataset_file(config[f"{split}_label_path"])
        read = read_split(config, split)
        for row in manifest(video_runs["frames"], split):
            key = f"{split}/{row['id']}"
            names = [f"{key}/frame_{i:05d}.png" for i in range(row["num_frames"])]
            assert labels[key]["imgs_path"] == names  # one suffix, the clip frame numbered
            _name, _text, _gloss, length, images = read[key]
            assert length == row["num_frames"] == len(images)
            originals = video_runs["originals"][row["id"]]
            for image, original in zip(images, originals, strict=True):
                np.testing.assert_array_equal(image, loader_resize(original))
                np.testing.assert_array_equal(loader_resize(image), image)  # its resize: none
    readme = (video_runs["frames-export"] / "EXPORT.md").read_text()
    assert "written whole, squashed to 256x256" in readme and "None known" not in readme
    assert "at 256x256, not at the clips' 48x64" in readme


def test_the_same_run_gives_the_same_bytes(video_runs):
    def tree(folder: Path) -> dict[str, bytes]:
        files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in files
            if p.name.startswith(("labels.", "frame_"))
        }

    first = tree(video_runs["frames-export"])
    assert first and first == tree(video_runs["again"])


def test_a_strided_manifest_lists_its_frames_and_says_so(video_runs):
    config = video_runs["strided-config"]
    for split in SPLITS:
        labels = load_dataset_file(config[f"{split}_label_path"])
        for row in manifest(video_runs["strided"], split):
            key = f"{split}/{row['id']}"
            every_second = range(0, row["num_frames"], 2)
            assert labels[key]["imgs_path"] == [f"{key}/frame_{i:05d}.png" for i in every_second]
            assert labels[key]["length"] == len(every_second)
    readme = (video_runs["strided-export"] / "EXPORT.md").read_text()
    assert "the manifest's selected frames ({'step': 2" in readme


def test_without_the_corpus_the_stored_frames_are_copied_and_the_cut_is_listed(
    video_runs, tmp_path
):
    out = video_runs["frames"]
    config = export(out, tmp_path / "gfslt")
    for split in SPLITS:
        stored = {}
        for tar in sorted((out / "shards" / split).glob("*.tar")):
            for _key, fields in iter_tar_samples(tar):
                meta = json.loads(fields["json"])
                names = sorted(f for f in fields if f.startswith("frame_"))
                stored[meta["id"]] = (meta["frame_indices"], [fields[f] for f in names])
        labels = load_dataset_file(config[f"{split}_label_path"])
        assert list(labels) == [f"{split}/{sample_id}" for sample_id in stored]
        for sample_id, (indices, jpegs) in stored.items():
            key = f"{split}/{sample_id}"
            assert labels[key]["imgs_path"] == [f"{key}/frame_{i:05d}.jpg" for i in indices]
            copied = [(Path(config["img_path"]) / x).read_bytes() for x in labels[key]["imgs_path"]]
            assert copied == jpegs  # the stored bytes, unchanged
    readme = (tmp_path / "gfslt" / "EXPORT.md").read_text()
    assert "stored 64x64 JPEGs (quality 90), copied because" in readme
    assert "keeps each frame's central square" in readme
    assert "up to 8 px are cut from the top and bottom of a 48x64 clip" in readme


def test_without_the_corpus_or_stored_frames_the_export_is_refused_in_one_line(
    video_runs, tmp_path
):
    result = prep(
        "export", "--format", "gfslt-vlp", "--out", video_runs["strided"], "--to", tmp_path / "x"
    )
    assert result.exit_code == 1 and "is not reachable" in result.output
    assert "run features with --with-frames" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_real_portrait_clip_is_exported_whole(hand_clip, tmp_path):
    """540x720 (real where present): the whole frame reaches GFSLT-VLP, not the central square
    prep's keep-aspect geometry keeps (rows 90 to 630 of 720)."""
    out = tmp_path / "out"
    annotations = one_clip_csv(hand_clip, tmp_path)
    assert run_generic("manifest", annotations, out).exit_code == 0
    config = export(out, tmp_path / "gfslt")
    ((_name, _text, _gloss, length, images),) = read_split(config, "test").values()
    originals = whole_frames(hand_clip)
    assert length == len(originals) == 58
    for image, original in zip(images, originals, strict=True):
        np.testing.assert_array_equal(image, loader_resize(original))


def without_frame_indices(out: Path) -> None:
    """The first train shard rewritten with its first sample's ``frame_indices`` gone, its
    index entry made to match, as a doctored run handed over would be."""
    folder = out / "shards" / "train"
    index = json.loads((folder / "index.json").read_text())
    entry = index["shardlist"][0]
    path = folder / entry["url"]
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isreg()]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        done = False
        for info, data in members:
            if info.name.endswith(".json") and not done:
                meta = json.loads(data)
                del meta["frame_indices"]
                data, done = json.dumps(meta).encode(), True
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    entry["filesize"] = path.stat().st_size
    (folder / "index.json").write_text(json.dumps(index))


def test_stored_frames_without_their_frame_indices_are_refused_in_one_line(video_runs, tmp_path):
    out = Path(shutil.copytree(video_runs["frames"], tmp_path / "out"))
    without_frame_indices(out)
    result = prep("export", "--format", "gfslt-vlp", "--out", out, "--to", tmp_path / "x")
    assert result.exit_code == 1, result.output
    assert "stored frames do not match its frame_indices" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list((tmp_path / "x" / "frames").rglob("*.jpg"))
