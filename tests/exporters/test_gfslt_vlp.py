"""``prep export --format gfslt-vlp`` read back the way zhoubenjia/GFSLT-VLP reads it."""

from __future__ import annotations

import gzip
import pickle

import cv2
import pyarrow.parquet as pq
import yaml

from tests.conftest import prep


def load_dataset_file(filename):
    """utils.py:297-300 of GFSLT-VLP, as its authors wrote it (our own files: trusted here)."""
    with gzip.open(filename, "rb") as f:
        return pickle.load(f)


def read_split(config: dict, split: str) -> dict[str, tuple]:
    """datasets.py:63-111: keys listed, each sample's text, length, name and images read with
    ``cv2.imread(img_path + x)``."""
    raw_data = load_dataset_file(config[f"{split}_label_path"])
    read = {}
    for key in [key for key, value in raw_data.items()]:
        sample = raw_data[key]
        images = [cv2.imread(config["img_path"] + x) for x in sample["imgs_path"]]
        read[key] = (sample["name"], sample["text"], sample["gloss"], sample["length"], images)
    return read


def export(prepared, target):
    result = prep("export", "--format", "gfslt-vlp", "--out", prepared, "--to", target)
    assert result.exit_code == 0, result.output
    return yaml.safe_load((target / "gfslt-vlp-data.yaml").read_text())["data"]


def test_frame_folders_are_pointed_at_where_they_are(prepared_phoenix, tmp_path):
    config = export(prepared_phoenix, tmp_path / "gfslt")
    assert config["img_path"].endswith("/") and not (tmp_path / "gfslt" / "frames").exists()
    for split in ("train", "dev", "test"):
        manifest = pq.read_table(prepared_phoenix / "manifest" / f"{split}.parquet").to_pylist()
        read = read_split(config, split)
        assert list(read) == [f"{split}/{row['id']}" for row in manifest]  # manifest order
        for row in manifest:
            name, text, gloss, length, images = read[f"{split}/{row['id']}"]
            assert name == f"{split}/{row['id']}" and text == row["translation"]
            assert gloss == row["gloss"] and length == row["num_frames"] == len(images)
            assert all(image is not None and image.shape == (52, 42, 3) for image in images)
    first = load_dataset_file(config["dev_label_path"])
    paths = next(iter(first.values()))["imgs_path"]
    assert paths == sorted(paths) and paths[0].endswith("images0001.png")  # frame order


def test_video_corpora_get_the_frames_stored_in_the_shards(prepared_videos, tmp_path):
    config = export(prepared_videos, tmp_path / "gfslt")
    assert config["img_path"] == f"{tmp_path / 'gfslt' / 'frames'}/"
    for split in ("train", "dev", "test"):
        manifest = pq.read_table(prepared_videos / "manifest" / f"{split}.parquet").to_pylist()
        read = read_split(config, split)
        for row in manifest:
            _name, _text, _gloss, length, images = read[f"{split}/{row['id']}"]
            assert length == row["num_frames"] == len(images)
            assert all(image is not None and image.shape == (64, 64, 3) for image in images)


def test_video_corpora_without_stored_frames_are_refused_in_one_line(
    prepared_videos, tmp_path, tiny_dinov2
):
    out = tmp_path / "no-frames"
    root = prepared_videos.parent / "corpus" / "corpus.csv"
    run = ["--dataset", "generic", "--root", root, "--out", out, "--quiet", "--dinov2", tiny_dinov2]
    assert prep("run", "--stage", "features", *run).exit_code == 0
    result = prep("export", "--format", "gfslt-vlp", "--out", out, "--to", tmp_path / "x")
    assert result.exit_code == 1 and "run features with --with-frames" in result.output
    assert not (tmp_path / "x").exists()
