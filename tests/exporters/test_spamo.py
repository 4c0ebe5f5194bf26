"""``prep export --format spamo`` read back the way eddie-euijun-hwang/SpaMo (aee7f8b) reads
it: its Phoenix14T dataset class, the part of its model's ``get_inputs`` that touches each
sample, and its feature scripts' walk over the info file, re-implemented here from its source
(file:line on each) and run on our own exported files (trusted: a test may unpickle them).
"""

from __future__ import annotations

import glob
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline.shards import decode_npy, iter_tar_samples
from tests.conftest import prep

ENTRY_KEYS = {"fileid", "folder", "signer", "gloss", "text", "num_frames", "original_info", "tag"}
OTHER_TEXTS = {"en_text", "es_text", "fr_text"}
NOT_SPAMOS = {"EXPORT.md", ".prep-export.json", "spamo-data.yaml"}  # they name the target


def load_info(path):
    """dataset/p14t.py:65 (and scripts/vit_extract_feature.py:81)."""
    return np.load(path, allow_pickle=True).item()


class Phoenix14T(torch.utils.data.Dataset):
    """dataset/p14t.py:17-207: the one dataset class SpaMo has, used for every corpus."""

    def __init__(
        self,
        anno_root,
        vid_root,
        feat_root,
        mae_feat_root,
        mode="dev",
        spatial=False,
        spatiotemporal=False,
        spatial_postfix="",
        spatiotemporal_postfix="",
    ):
        super().__init__()
        if not (spatial or spatiotemporal):
            raise ValueError("spatial or spatiotemporal")  # :57-58
        self.mode, self.spatial, self.spatiotemporal = mode, spatial, spatiotemporal
        self.spatial_postfix = spatial_postfix
        self.spatiotemporal_postfix = spatiotemporal_postfix
        self.vid_root = Path(vid_root)
        anno_path = Path(anno_root) / f"{mode}_info_ml.npy"  # :61
        assert anno_path.exists()  # :62-63
        self.data = load_info(anno_path)
        self.spatial_dir = Path(feat_root) / mode  # :68
        self.spatiotemporal_dir = Path(mae_feat_root) / mode
        assert not spatial or self.spatial_dir.exists()  # :74-80
        assert not spatiotemporal or self.spatiotemporal_dir.exists()

    def __getitem__(self, index):
        data = self.data[index]  # :139
        file_id = data["fileid"]
        pixel_value = glor_value = None
        if self.spatial:  # :95-99; a missing file is reported, then empty (:146-150)
            feat_path = self.spatial_dir / f"{file_id}{self.spatial_postfix}.npy"
            assert feat_path.exists(), feat_path
            pixel_value = torch.tensor(np.load(feat_path))
        if self.spatiotemporal:  # :114-118
            path = self.spatiotemporal_dir / f"{file_id}{self.spatiotemporal_postfix}.npy"
            glor_value = torch.tensor(np.load(path))
        text = data["text"].strip()  # :186-199
        result = {
            "pixel_value": pixel_value,
            "glor_value": glor_value,
            "bool_mask_pos": None,
            "text": text if text.endswith(".") else f"{text}.",
            "gloss": data["gloss"],
            "id": file_id,
            "num_frames": len(pixel_value) if pixel_value is not None else 0,
            "vid_path": str(self.vid_root / "features" / "fullFrame-256x256px" / data["folder"]),
            "lang": "German",
        }
        for lang in ["en", "es", "fr"]:  # :177-179
            if f"{lang}_text" in data:
                result[f"{lang}_text"] = data[f"{lang}_text"]
        result["original_info"] = data
        return result

    def __len__(self):
        return len(self.data) - 1  # :201-203


def derangement(lst):
    """utils/helpers.py:8-15."""
    assert len(lst) > 1
    while True:
        shuffled = lst[:]
        random.shuffle(shuffled)
        if all(original != shuffled[i] for i, original in enumerate(lst)):
            return shuffled


def get_inputs(batch, frame_sample_rate=1, max_frame_len=512, num_in_context=3):
    """spamo/t5_slt.py:330-390 (configs/finetune.yaml:12,14,26): what each sample must hold."""
    ids, texts, num_frames, pixel_values, in_context = [], [], [], [], []
    for sample in batch:
        if sample["pixel_value"].shape[0] != 0:  # :338
            nframe = math.ceil(sample["num_frames"] / frame_sample_rate)
            pval = sample["pixel_value"][::frame_sample_rate]
            ids.append(sample["id"])
            texts.append(sample["text"].lower())
            examples = [f"{sample[k]}={sample['text']}" for k in ("en_text", "fr_text", "es_text")]
            in_context.append(" ".join(examples[:num_in_context]))
            if nframe > max_frame_len:  # :358-361
                nframe = max_frame_len
                start = random.randint(0, pval.size(0) - max_frame_len)
                pval = pval[start : start + max_frame_len]
            num_frames.append(nframe)
            pixel_values.append(pval)
    derangement(in_context)  # :376
    return {"ids": ids, "text": texts, "num_frames": num_frames, "pixel_values": pixel_values}


def export(prepared: Path, target: Path, *extra: object) -> dict:
    result = prep("export", "--format", "spamo", "--out", prepared, "--to", target, *extra)
    assert result.exit_code == 0, result.output
    return yaml.safe_load((target / "spamo-data.yaml").read_text())


def manifest_rows(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / "manifest" / f"{split}.parquet").to_pylist()


def shard_features(out: Path, split: str, field: str = "dinov2") -> dict[str, np.ndarray]:
    found = {}
    for tar in sorted((out / "shards" / split).glob("*.tar")):
        for _key, fields in iter_tar_samples(tar):
            found[json.loads(fields["json"])["id"]] = decode_npy(fields[f"{field}.npy"])
    return found


def check_info_files(anno_root: Path, split: str, manifest: list[dict]) -> dict:
    """The two info files as SpaMo's own are made: the header of ``np.save`` of a 0-d object
    array, keys ``prefix`` then ``0..N-1`` in manifest order, the distributed entries' keys."""
    plain, multi = anno_root / f"{split}_info.npy", anno_root / f"{split}_info_ml.npy"
    for path in (plain, multi):
        with open(path, "rb") as handle:
            assert np.lib.format.read_magic(handle) == (1, 0)
            assert np.lib.format.read_array_header_1_0(handle) == ((), False, np.dtype("O"))
    info, info_ml = load_info(plain), load_info(multi)
    assert list(info) == ["prefix", *range(len(manifest))]
    for i, row in enumerate(manifest):
        entry = info[i]
        assert set(entry) == ENTRY_KEYS and set(info_ml[i]) == ENTRY_KEYS | OTHER_TEXTS
        assert info_ml[i] == {**entry, "en_text": "", "es_text": "", "fr_text": ""}
        assert entry["fileid"] == row["id"] and entry["text"] == row["translation"]
        assert entry["gloss"] == row["gloss"] and entry["signer"] == row["signer"]
        assert type(entry["num_frames"]) is int and entry["num_frames"] == row["num_frames"]
        assert entry["original_info"] == row and entry["tag"] == row["dataset"]
    return info


def walk_like_the_feature_scripts(info: dict, manifest: list[dict]) -> None:
    """scripts/vit_extract_feature.py:82,93-98 (mae_extract_feature.py:68,80-84): clips
    ``0..len - 2`` by ``folder``: a frame glob (utils/helpers.py:71-79), else a video path."""
    num = len(info) - 1
    assert num == len(manifest)
    for i in range(num):
        where = os.path.join(info["prefix"], info[i]["folder"])
        if manifest[i]["source_kind"] == "frames":
            assert info[i]["folder"] == f"{manifest[i]['split']}/{manifest[i]['id']}/*.png"
            assert len(sorted(glob.glob(where))) == manifest[i]["num_frames"]
        else:
            assert os.path.isfile(where)


@pytest.mark.parametrize("prepared_name", ["prepared_phoenix", "prepared_videos"])
def test_spamo_reads_every_split_with_texts_and_features(prepared_name, request, tmp_path):
    prepared = request.getfixturevalue(prepared_name)
    config = export(prepared, tmp_path / "spamo")
    assert config["model"] == {
        "params": {"input_size": 32, "fusion_mode": "spatial", "use_in_context": False}
    }
    roles = config["data"]["params"]
    assert {role: spec["params"]["mode"] for role, spec in roles.items()} == {
        "train": "train",
        "validation": "dev",
        "test": "test",
    }
    for spec in roles.values():
        assert spec["target"] == "dataset.p14t.Phoenix14T"
        split = spec["params"]["mode"]
        manifest = manifest_rows(prepared, split)
        info = check_info_files(Path(spec["params"]["anno_root"]), split, manifest)
        walk_like_the_feature_scripts(info, manifest)
        dataset = Phoenix14T(vid_root=tmp_path, mae_feat_root=tmp_path / "none", **spec["params"])
        assert len(dataset) == len(manifest)
        items = [dataset[i] for i in range(len(dataset))]
        features = shard_features(prepared, split)
        for item, row in zip(items, manifest):
            assert item["id"] == row["id"] and item["text"] == f"{row['translation']}."
            assert item["pixel_value"].dtype == torch.float32
            assert item["pixel_value"].shape == (row["num_frames"], 32)
            assert item["num_frames"] == row["num_frames"]
            expected = features[row["id"]].astype(np.float32)
            np.testing.assert_array_equal(item["pixel_value"].numpy(), expected)
        inputs = get_inputs(items)
        assert inputs["ids"] == [row["id"] for row in manifest]
        assert inputs["num_frames"] == [row["num_frames"] for row in manifest]
    readme = (tmp_path / "spamo" / "EXPORT.md").read_text()
    assert "python main.py -c configs/finetune.yaml" in readme
    assert "motion features: none" in readme and "en_text, es_text and fr_text" in readme
    assert "fewer than 16 feature rows" in readme  # the fixtures' clips have 8 to 20 frames
    assert "names German" not in readme  # a German corpus


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in NOT_SPAMOS
    }


def test_exports_are_byte_identical_and_refuse_a_foreign_folder(prepared_phoenix, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    export(prepared_phoenix, first)
    export(prepared_phoenix, second)
    written = tree_bytes(first)
    assert "preprocess/Phoenix14T/train_info.npy" in written
    assert written == tree_bytes(second)
    export(prepared_phoenix, first)  # the same export again: rewritten, the same bytes
    assert tree_bytes(first) == written
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = prep("export", "--format", "spamo", "--out", prepared_phoenix, "--to", foreign)
    assert refused.exit_code == 1 and "is not empty" in refused.output
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ("hamer", "hold no hamer field"),
        ("caption_emb", "caption_emb is per clip, not per frame"),
        ("caption_chunks_emb", "caption_chunks_emb is per clip, not per frame"),
    ],
)
def test_unusable_fields_are_refused_in_one_line(prepared_phoenix, tmp_path, fields, said):
    target = tmp_path / "refused"
    result = prep(
        "export", "--format", "spamo", "--out", prepared_phoenix, "--to", target, "--fields", fields
    )
    assert result.exit_code == 1 and said in result.output
    assert len(result.output.strip().splitlines()) == 1 and not target.exists()


def test_a_run_without_features_is_refused_or_exported_as_labels(prepared_phoenix, tmp_path):
    out = tmp_path / "manifest-only"
    root = prepared_phoenix.parent / "corpus" / "PHOENIX-2014-T-release-v3"
    where = ["--dataset", "phoenix14t", "--root", root, "--out", out, "--quiet"]
    assert prep("run", "--stage", "manifest", *where).exit_code == 0
    refused = prep("export", "--format", "spamo", "--out", out, "--to", tmp_path / "x")
    assert refused.exit_code == 1 and "has no shards" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    target = tmp_path / "labels"
    config = export(out, target, "--fields", ",")  # an empty list: the labels alone
    assert "model" not in config and not list(target.glob("*_feat_*"))
    for split in ("train", "dev", "test"):
        manifest = manifest_rows(out, split)
        info = check_info_files(target / "preprocess" / "Phoenix14T", split, manifest)
        walk_like_the_feature_scripts(info, manifest)
    assert "labels only" in (target / "EXPORT.md").read_text()
