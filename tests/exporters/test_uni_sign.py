"""``prep export --format uni-sign`` read back the way ZechengLi19/Uni-Sign (2c9028f) reads it:
its label loading, its dataset's folders, pose loading and part split, re-implemented here from
its source (file:line on each) and run on our own exported files (trusted: a test may unpickle
them)."""

from __future__ import annotations

import copy
import gzip
import json
import os
import pickle
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from exporters.uni_sign import FACE68_MESH, UniSignExporter, WholeBodyMapping
from pipeline import synthetic
from pipeline.shards import decode_npy, iter_tar_samples
from stages.pose.points import WHOLEBODY_TO_BODY, WHOLEBODY_TO_HANDS, face_subset
from tests.conftest import copy_beside, prep, run_generic

NOT_UNI_SIGNS = {"EXPORT.md", ".prep-export.json", "uni-sign-config.py"}  # they name the target
BODY, LEFT, RIGHT = [0, *range(3, 11)], range(91, 112), range(112, 133)  # datasets.py:32-41
FACE_ALL = [*range(23, 40, 2), *range(83, 91), 53]  # datasets.py:43
# the 69 COCO-WholeBody points prep's 75 MediaPipe-order points keep (stages/pose/points.py)
KEPT = [*range(17), 17, 19, 20, 22, *(23 + i for i in (36, 39, 42, 45, 48, 54)), *range(91, 133)]


def uni_sign_config() -> dict[str, dict[str, str]]:
    """config.py:4-45's dicts (paths as shipped)."""
    names = ("CSL_News", "CSL_Daily", "WLASL", "How2Sign", "OpenASL")
    return {
        key: {name: f"./{key}/{name}" for name in names}
        for key in ("train_label_paths", "dev_label_paths", "test_label_paths")
    } | {key: {name: f"./dataset/{name}/x" for name in names} for key in ("rgb_dirs", "pose_dirs")}


def load_dataset_file(filename):
    """utils.py:315-318."""
    with gzip.open(filename, "rb") as f:
        loaded_object = pickle.load(f)
        return loaded_object


def crop_scale(motion, thr):
    """datasets.py:80-105."""
    result = copy.deepcopy(motion)
    valid_coords = motion[motion[..., 2] > thr][:, :2]
    if len(valid_coords) < 4:
        return np.zeros(motion.shape), 0, None
    xmin, xmax = min(valid_coords[:, 0]), max(valid_coords[:, 0])
    ymin, ymax = min(valid_coords[:, 1]), max(valid_coords[:, 1])
    scale = max(xmax - xmin, ymax - ymin) * 1
    if scale == 0:
        return np.zeros(motion.shape), 0, None
    xs = (xmin + xmax - scale) / 2
    ys = (ymin + ymax - scale) / 2
    result[..., :2] = (motion[..., :2] - [xs, ys]) / scale
    result[..., :2] = (result[..., :2] - 0.5) * 2
    result = np.clip(result, -1, 1)
    result[result[..., 2] <= thr] = 0
    return result, scale, [xs, ys]


def load_part_kp(skeletons, confs):
    """datasets.py:18-75 (``force_ok`` changes nothing there)."""
    thr, kps_with_scores, scale = 0.3, {}, None
    for part, picked in (("body", BODY), ("left", LEFT), ("right", RIGHT), ("face_all", FACE_ALL)):
        kps, confidences = [], []
        for skeleton, conf in zip(skeletons, confs):
            skeleton, conf = skeleton[0], conf[0]  # :28-29
            hand_kp2d = skeleton[list(picked), :]
            if part in ("left", "right"):
                hand_kp2d = hand_kp2d - hand_kp2d[0, :]  # :36,40
            elif part == "face_all":
                hand_kp2d = hand_kp2d - hand_kp2d[-1, :]  # :44
            kps.append(hand_kp2d)
            confidences.append(conf[list(picked)])
        kps, confidences = np.stack(kps, axis=0), np.stack(confidences, axis=0)
        if part == "body":
            result, scale, _ = crop_scale(np.concatenate([kps, confidences[..., None]], -1), thr)
        else:
            assert scale is not None
            result = np.concatenate([kps, confidences[..., None]], axis=-1)
            if scale == 0:
                result = np.zeros(result.shape)
            else:
                result[..., :2] = (result[..., :2]) / scale
                result = np.clip(result, -1, 1)
                result[result[..., 2] <= thr] = 0
        kps_with_scores[part] = torch.tensor(result)
    return kps_with_scores


class S2TDataset:
    """datasets.py:406-500, pose-only (``rgb_support`` off), ``config`` in place of config.py."""

    def __init__(self, path, dataset, phase, config, max_length=256):
        self.max_length = max_length  # utils.py:523
        self.raw_data = load_dataset_file(path)
        pose_dirs = config["pose_dirs"]
        if dataset == "CSL_Daily":  # :415-434
            self.pose_dir = pose_dirs[dataset]
        elif "WLASL" in dataset:
            self.pose_dir = os.path.join(pose_dirs[dataset], phase)
        elif "How2Sign" in dataset:
            if phase == "dev":
                raise NotImplementedError("How2Sign dev set is not supported")
            self.pose_dir = pose_dirs[dataset].format(phase)
        elif "OpenASL" in dataset:
            self.pose_dir = pose_dirs[dataset].format(phase)
        else:
            raise NotImplementedError
        self.list = list(self.raw_data.keys())

    def __len__(self):
        return len(self.list)

    def __getitem__(self, index):
        sample = self.raw_data[self.list[index]]  # :447-459
        text = sample["text"]
        gloss = " ".join(sample["gloss"]) if "gloss" in sample.keys() else ""
        return sample["name"], self.load_pose(sample["video_path"]), text, gloss, {}

    def load_pose(self, path):
        """:461-490."""
        pose = pickle.load(open(os.path.join(self.pose_dir, path.replace(".mp4", ".pkl")), "rb"))
        if "start" in pose.keys():
            duration, start = pose["end"] - pose["start"], pose["start"]
        else:
            duration, start = len(pose["scores"]), 0
        if duration > self.max_length:
            tmp = sorted(random.sample(range(duration), k=self.max_length))
        else:
            tmp = list(range(duration))
        tmp = np.array(tmp) + start
        skeletons = [pose["keypoints"][i] for i in tmp]
        confs = [pose["scores"][i] for i in tmp]
        return load_part_kp(skeletons, confs)


def collate(batch):
    """datasets.py:337-376: each part padded with its last frame, and the attention mask."""
    src_input = {}
    poses = [pose for _, pose, _, _, _ in batch]
    for key in poses[0].keys():
        max_len = max(len(vid[key]) for vid in poses)
        padded = [
            torch.cat((vid[key], vid[key][-1][None].expand(max_len - len(vid[key]), -1, -1)), 0)
            for vid in poses
        ]
        src_input[key] = torch.stack(padded, 0)
    lengths = torch.LongTensor([len(vid["body"]) for vid in poses])
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones([i]) + 7 for i in lengths], True, 0)
    src_input["attention_mask"] = (mask != 0).long()
    return src_input


def export(out: Path, target: Path, *flags: object) -> Path:
    result = prep("export", "--format", "uni-sign", "--out", out, "--to", target, *flags)
    assert result.exit_code == 0, result.output
    return target


def configured(target: Path) -> dict[str, dict[str, str]]:
    """config.py with the export's lines appended, as EXPORT.md says."""
    config = uni_sign_config()
    exec((target / "uni-sign-config.py").read_text(), {}, config)
    return config


def manifest(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / "manifest" / f"{split}.parquet").to_pylist()


def shard_poses(out: Path, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for tar in sorted((out / "shards" / split).glob("*.tar")):
        for _key, fields in iter_tar_samples(tar):
            sample_id = json.loads(fields["json"])["id"]
            found[sample_id] = tuple(decode_npy(fields[f"{f}.npy"]) for f in ("pose", "pose_conf"))
    return found


def read_poses(dataset: S2TDataset) -> dict[str, dict]:
    return {
        key: pickle.load(
            open(os.path.join(dataset.pose_dir, value["video_path"].replace(".mp4", ".pkl")), "rb")
        )
        for key, value in dataset.raw_data.items()
    }


def assert_pose_pickle(pose: dict, frames: int) -> None:
    """demo/pose_extraction.py:23,44-46 with one person: T arrays of (1, 133, 2) and (1, 133)."""
    assert set(pose) == {"keypoints", "scores"} and len(pose["keypoints"]) == frames
    assert len(pose["scores"]) == frames
    for keypoints, scores in zip(pose["keypoints"], pose["scores"]):
        assert keypoints.shape == (1, 133, 2) and keypoints.dtype == np.float64
        assert scores.shape == (1, 133) and scores.dtype == np.float32
        assert keypoints.flags.writeable and np.isfinite(keypoints).all()
        assert ((scores >= 0) & (scores <= 1)).all()
        assert not keypoints[scores <= 0].any()


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory) -> Path:
    """6 synthetic mp4 clips through every stage, pose with the face contours (MediaPipe finds
    nobody on synthetic frames: every score is 0)."""
    folder = tmp_path_factory.mktemp("uni-sign-videos")
    samples = synthetic.default_samples("de", clips=6, frames=(8, 14))
    csv = synthetic.write_generic(folder / "corpus", samples, "de", size=(64, 48))
    out = folder / "out"
    flags = ("--captioner", "kinematic", "--features", "pose", "--pose-face", "contours")
    where = ("--dataset", "generic", "--root", csv, "--out", out, "--quiet")
    result = prep("run", "--stage", "all", *where, *flags)
    assert result.exit_code == 0, result.output
    return out


def test_uni_sign_reads_every_split_with_texts_and_poses(pose_run, tmp_path):
    target = export(pose_run, tmp_path / "uni-sign")
    config = configured(target)
    for split in ("train", "dev", "test"):
        assert config[f"{split}_label_paths"]["OpenASL"] == str(
            target / f"data/OpenASL/labels.{split}"
        )
        dataset = S2TDataset(config[f"{split}_label_paths"]["OpenASL"], "OpenASL", split, config)
        assert dataset.pose_dir == str(target / "dataset/OpenASL/pose_format" / split)
        rows = {row["id"]: row for row in manifest(pose_run, split)}
        assert dataset.list == list(rows)
        poses = read_poses(dataset)
        for index, key in enumerate(dataset.list):
            row, value = rows[key], dataset.raw_data[key]
            assert value == {
                "name": row["id"],
                "gloss": row["gloss"].split(),
                "text": row["translation"],
                "video_path": row["source_path"],  # the mp4 under the corpus folder
            }
            assert_pose_pickle(poses[key], row["num_frames"])
            name, parts, text, gloss, _ = dataset[index]
            assert (name, text, gloss) == (row["id"], row["translation"], row["gloss"])
            shapes = {part: tuple(t.shape) for part, t in parts.items()}
            frames = row["num_frames"]
            assert shapes == {
                "body": (frames, 9, 3),
                "left": (frames, 21, 3),
                "right": (frames, 21, 3),
                "face_all": (frames, 18, 3),
            }
        batch = collate([dataset[i] for i in range(len(dataset))])
        longest = max(r["num_frames"] for r in rows.values())
        assert batch["body"].shape == (len(rows), longest, 9, 3)
        assert batch["attention_mask"].sum().item() == sum(r["num_frames"] for r in rows.values())
    readme = (target / "EXPORT.md").read_text()
    assert "fine_tuning.py --dataset OpenASL" in readme and "60 of 68 face points" in readme


def test_exports_are_byte_identical(pose_run, tmp_path):
    first, second = export(pose_run, tmp_path / "a"), export(pose_run, tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".pkl"]) == 6
    for path in files:
        if path.name not in NOT_UNI_SIGNS:
            assert (first / path).read_bytes() == (second / path).read_bytes(), path


def test_keypoints_files_come_back_exactly(tmp_path):
    """COCO-WholeBody keypoints given with --pose-keypoints: the 69 points prep keeps come back
    as the file has them, over the frame's size; the others score 0 but the nose tip."""
    samples = synthetic.default_samples("en", clips=3, frames=(6, 9))
    csv = synthetic.write_generic(tmp_path / "corpus", samples, "en", size=(64, 48))
    out, folder = tmp_path / "out", tmp_path / "keypoints"
    assert run_generic("manifest", csv, out).exit_code == 0
    splits = sorted({s.split for s in samples})
    rows = {r["id"]: r for split in splits for r in manifest(out, split)}
    rng = np.random.default_rng(7)
    folder.mkdir()
    given = {}
    for sample_id, row in rows.items():
        points = rng.uniform(0, 1, (row["num_frames"], 133, 3)).astype(np.float32)
        points[..., :2] *= (row["width"], row["height"])
        points[..., 2] = 0.05 + 0.9 * points[..., 2]
        np.save(folder / f"{sample_id}.npy", given.setdefault(sample_id, points))
    flags = ("--features", "pose", "--pose-keypoints", folder)
    assert run_generic("features", csv, out, *flags).exit_code == 0
    target = export(out, tmp_path / "uni-sign")
    config = configured(target)
    for split in splits:
        dataset = S2TDataset(config[f"{split}_label_paths"]["OpenASL"], "OpenASL", split, config)
        for key, pose in read_poses(dataset).items():
            points, row = given[key], rows[key]
            keypoints = np.concatenate(pose["keypoints"])
            scores = np.concatenate(pose["scores"])
            size = np.array([row["width"], row["height"]], np.float64)
            expected = points[..., :2].astype(np.float64) / size  # pose_extraction.py:45
            np.testing.assert_array_equal(keypoints[:, KEPT], expected[:, KEPT])
            np.testing.assert_array_equal(scores[:, KEPT], points[:, KEPT, 2])
            np.testing.assert_array_equal(keypoints[:, 53], expected[:, 0])  # nose tip
            lost = sorted(set(range(133)) - set(KEPT) - {53})
            assert len(lost) == 63 and not scores[:, lost].any()
            assert not keypoints[:, lost].any()
    assert "come back exactly" in (target / "EXPORT.md").read_text()


def test_a_real_person_is_found_where_the_frame_shows_them(real_hand_clip, tmp_path):
    """MediaPipe on a real clip: the body and face are found, inside the frame, and Uni-Sign's
    part split sees them."""
    (tmp_path / "corpus").mkdir()
    csv = tmp_path / "corpus" / "clips.csv"
    name = copy_beside(real_hand_clip, tmp_path / "corpus")
    csv.write_text(f"id,path,text,language,split\nhand_clip,{name},a raised hand,en,train\n")
    out = tmp_path / "out"
    flags = ("--features", "pose", "--pose-face", "contours")
    assert run_generic("features", csv, out, *flags).exit_code == 0
    target = export(out, tmp_path / "uni-sign")
    config = configured(target)
    dataset = S2TDataset(config["train_label_paths"]["OpenASL"], "OpenASL", "train", config)
    pose = read_poses(dataset)["hand_clip"]
    assert_pose_pickle(pose, 58)
    keypoints, scores = np.concatenate(pose["keypoints"]), np.concatenate(pose["scores"])
    sure = scores > 0.3  # datasets.py:71
    assert sure[:, BODY].mean() > 0.5 and sure[:, FACE_ALL].mean() > 0.5
    head = [0, *range(1, 5), *range(23, 91)]  # in the picture; arms and hips leave it below
    assert (
        (keypoints[:, head][sure[:, head]] >= 0) & (keypoints[:, head][sure[:, head]] <= 1)
    ).all()
    assert ((keypoints[sure] > -0.5) & (keypoints[sure] < 1.5)).all()  # extrapolated, not cut
    pixels, confidences = shard_poses(out, "train")["hand_clip"]
    direct = {coco: body for body, coco in enumerate(WHOLEBODY_TO_BODY) if coco < 23}
    direct |= {coco: 33 + k for k, coco in enumerate(WHOLEBODY_TO_HANDS)}
    coco, mine = list(direct), list(direct.values())
    np.testing.assert_array_equal(scores[:, coco], confidences[:, mine])
    np.testing.assert_allclose(keypoints[:, coco] * (540, 720), pixels[:, mine, :2], rtol=1e-6)
    assert (confidences[:, 33:75] > 0).any()  # a hand is found
    parts = dataset[0][1]
    assert parts["body"][..., 2].gt(0.3).any() and parts["face_all"][..., 2].gt(0.3).any()


def test_face_mesh_points_map_to_300w(tmp_path):
    """The face-mesh subset's points land on COCO-WholeBody's face by mp2dlib.py's table."""
    mesh = face_subset("contours")
    mapping = WholeBodyMapping({"face_mesh": list(mesh)})
    frames, k = 2, 75 + len(mesh)
    pose = np.zeros((frames, k, 3), np.float32)
    pose[..., 0] = np.arange(k)  # x: the point's own index, y: 0
    conf = np.ones((frames, k), np.float32)
    keypoints, scores = mapping(pose, conf, 1, 1)
    at = {m: 75 + i for i, m in enumerate(mesh)}
    assert keypoints[0, 23 + 0, 0] == at[127] and keypoints[0, 23 + 30, 0] == 0  # nose tip: body
    assert keypoints[0, 23 + 3, 0] == (at[132] + at[58]) / 2  # a pair: the mean
    assert [keypoints[0, 23 + j, 0] for j in range(60, 68)] == [
        at[m] for m in (78, 82, 13, 312, 308, 317, 14, 87)
    ]
    assert int((scores[0, 23:91] > 0).sum()) == 60  # all but the nose line (27-35) + the tip
    assert len(FACE68_MESH) == 68
    lips = WholeBodyMapping({"face_mesh": list(face_subset("lips"))})
    assert int((~lips.empty[23:91]).sum()) == 20 + 1 + 4  # lips, the tip, BlazePose's eyes


@pytest.mark.parametrize(
    ("dataset", "key", "video"),
    [
        ("how2sign", "-fZc293MpJk_0-1-rgb_front.mp4", "-fZc293MpJk_0-1-rgb_front.mp4"),
        ("openasl", "1nFdgokPwBw-00:00:14.100-00:00:17.266.mp4", None),
        ("wlasl", "00295", "00295.mp4"),
        ("csl-daily", "S000020_P0000_T00", "S000020_P0000_T00.mp4"),
    ],
)
def test_uni_sign_corpora_are_named_as_its_shipped_labels(dataset, key, video):
    """data/*/labels.* (read with pickletools): How2Sign and OpenASL keyed by the clip's file
    name, WLASL and CSL-Daily by the id with ``<id>.mp4`` videos."""
    own = key.removesuffix(".mp4")
    row = {
        "id": own.replace(":", "."),
        "source_id": own if ":" in own else None,
        "gloss": "",
        "translation": "Hi!",
        "source_kind": "video",
        "source_path": "x/y.mp4",
        "start": 1.0,
        "end": 2.0,
    }
    exporter = UniSignExporter.__new__(UniSignExporter)
    exporter.source = SimpleNamespace(dataset=dataset)
    assert exporter.entry(row) == (
        key,
        {"name": key, "gloss": "", "text": "Hi!", "video_path": video or key},
    )


def test_csl_daily_frame_folders_share_one_pose_folder(csl_root, tmp_path):
    out = tmp_path / "out"
    where = ("--dataset", "csl-daily", "--root", csl_root, "--out", out, "--quiet")
    result = prep("run", "--stage", "features", *where, "--features", "pose")
    assert result.exit_code == 0, result.output
    target = export(out, tmp_path / "uni-sign")
    config = configured(target)
    assert config["pose_dirs"]["CSL_Daily"] == str(target / "dataset/CSL_Daily/pose_format")
    for split in ("train", "dev", "test"):
        rows = {row["id"]: row for row in manifest(out, split)}
        dataset = S2TDataset(
            config[f"{split}_label_paths"]["CSL_Daily"], "CSL_Daily", split, config
        )
        assert dataset.list == list(rows)
        for key, pose in read_poses(dataset).items():
            value = dataset.raw_data[key]
            assert (
                value["video_path"] == f"{key}.mp4" and value["gloss"] == rows[key]["gloss"].split()
            )
            assert_pose_pickle(pose, rows[key]["num_frames"])
    readme = (target / "EXPORT.md").read_text()
    assert "10 samples are frame folders" in readme and "--dataset CSL_Daily" in readme


def refused(out: Path, target: Path, *flags: object) -> str:
    result = prep("export", "--format", "uni-sign", "--out", out, "--to", target, *flags)
    assert result.exit_code == 1 and not target.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_what_uni_sign_cannot_read_is_refused_before_anything_is_written(pose_run, tmp_path):
    samples = synthetic.default_samples("en", clips=3, frames=(6, 9))
    csv = synthetic.write_generic(tmp_path / "corpus", samples, "en", size=(64, 48))
    strided, bare, shoulders = tmp_path / "strided", tmp_path / "bare", tmp_path / "shoulders"
    assert run_generic("manifest", csv, strided, "--frame-step", 2).exit_code == 0
    assert run_generic("manifest", csv, bare).exit_code == 0
    flags = ("--features", "pose", "--pose-normalise", "shoulders")
    assert run_generic("features", csv, shoulders, *flags).exit_code == 0
    assert "without --frame-step/--max-frames" in refused(strided, tmp_path / "a")
    assert "run features with --features pose" in refused(bare, tmp_path / "b")
    assert "--pose-normalise none" in refused(shoulders, tmp_path / "c")
    assert "drop --fields" in refused(pose_run, tmp_path / "d", "--fields", "dinov2")
