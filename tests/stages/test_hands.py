"""HaMeR written here against the reference test vectors and the released checkpoint's names;
safe checkpoint loading; MediaPipe hand detection on the real hand clip; hand features through
the CLI (generated clip and keypoints, and the real clip with MediaPipe)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import PrepError
from pipeline.shards import decode_npy, iter_tar_samples
from pipeline.video import ChunkInfo, open_source
from stages.hands.detect import HandDetector
from stages.hands.hamer import Hamer, HamerConfig, load_hamer
from stages.hands.rows import COLUMNS, SOURCE_HANDS, SOURCE_KEYPOINTS
from tests.conftest import (
    hamer_features_of_one_clip,
    prep,
    raised_hand_keypoints,
    run_generic,
    shared_file,
)
from tests.frames import decode_clip


def test_tiny_checkpoint_reproduces_the_reference_outputs(hamer_reference):
    reference = dict(np.load(hamer_reference / "io.npz"))
    model = load_hamer(hamer_reference / "hamer_tiny.ckpt", hamer_reference / "config.json")
    crops = torch.from_numpy(reference["img"])
    with torch.no_grad():
        backbone = model.backbone(crops[:, :, :, 32:-32])
        out = model(crops)
    assert np.abs(backbone.numpy() - reference["backbone_out"]).max() <= 1e-4
    for name, shape in (
        ("global_orient", (3, 1, 3, 3)),
        ("hand_pose", (3, 15, 3, 3)),
        ("betas", (3, 10)),
        ("cam", (3, 3)),
    ):
        assert tuple(out[name].shape) == shape
        assert np.abs(out[name].numpy() - reference[name]).max() <= 1e-4, name


def test_default_config_has_the_released_checkpoints_names_and_shapes():
    released = json.loads(shared_file("testvectors/hamer_full_keys.json").read_text())
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in Hamer().state_dict().items()}
    features = {
        k: list(v) for k, v in released.items() if k.startswith(("backbone.", "mano_head."))
    }
    assert (
        len(released) == 503 and ours == features
    )  # every other entry (mano.*, discriminator.*) is unused


def test_a_checkpoint_for_other_sizes_is_refused_with_the_keys_named(tiny_hamer):
    checkpoint, config_file = tiny_hamer
    with pytest.raises(
        PrepError, match=r"does not fit.*other shapes \(e\.g\. backbone\..*--hamer-config"
    ):
        load_hamer(checkpoint)  # the tiny file against the full-size default
    config = HamerConfig.from_file(config_file)
    deeper = dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, depth=3))
    with pytest.raises(PrepError, match=r"missing \(e\.g\. backbone\.blocks\.2\."):
        load_hamer(checkpoint, deeper)


class Payload:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_whose_pickle_would_run_code_loads_without_running_it(tmp_path, tiny_hamer):
    checkpoint, config = tiny_hamer
    marker = tmp_path / "pwned"
    state = load_hamer(checkpoint, config).state_dict()
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": Payload(marker)}, evil)
    model = load_hamer(evil, config)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), state.values()))
    only_payload = tmp_path / "payload.ckpt"
    torch.save(Payload(marker), only_payload)
    with pytest.raises(PrepError, match="no state_dict"):
        load_hamer(only_payload, config)
    assert not marker.exists()


def test_conversion_to_safetensors_gives_the_same_model(tmp_path, tiny_hamer):
    checkpoint, config = tiny_hamer
    target = tmp_path / "hamer.safetensors"
    result = prep("convert-hamer", checkpoint, target, "--hamer-config", config)
    assert result.exit_code == 0, result.output
    crops = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 256, 256), np.float32))
    with torch.no_grad():
        a, b = load_hamer(checkpoint, config)(crops), load_hamer(target, config)(crops)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def clip_frames(real_hand_clip):
    return decode_clip(open_source(real_hand_clip)).frames


def test_mediapipe_tracks_the_raised_hand_of_the_real_clip(clip_frames):
    detector = HandDetector(pose_fallback=False)
    chunks = [
        (clip_frames[i : i + 16], ChunkInfo(0, {"id": "hand_clip"}, np.arange(i, min(i + 16, 58))))
        for i in range(0, 58, 16)
    ]
    rows = np.concatenate([detector.detect(frames, info) for frames, info in chunks])
    assert rows.shape == (58, 2, COLUMNS)
    height = clip_frames.shape[1]
    found = rows[17:45, :, 0].any(axis=1)
    assert found.mean() >= 0.6  # most of frames 17-44
    raised = [r for r in rows[17:33].reshape(-1, COLUMNS) if r[1] == SOURCE_HANDS]
    centres = [(r[4] + r[6]) / 2 for r in raised]
    assert raised and np.mean([c < height / 2 for c in centres]) >= 0.7  # in front of the face
    assert (rows[17:45, 1, 0] > 0).sum() > (rows[17:45, 0, 0] > 0).sum()  # the signer's right hand
    assert not rows[:5, :, 0].any() and not rows[-4:, :, 0].any()  # hands resting below the frame
    landmarks = raised[0][7 : 7 + 63].reshape(21, 3)
    box = raised[0][3:7]
    assert (landmarks[:, 0] >= box[0] - 1e-3).all() and (landmarks[:, 1] <= box[3] + 1e-3).all()


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_hand_features_through_the_cli(tmp_path, request, source, tiny_hamer):
    """Generated clip, keypoints and HaMeR; and the real clip with MediaPipe and the reference's HaMeR."""
    clip = request.getfixturevalue(f"{source}_hand_clip")
    if source == "synthetic":
        checkpoint, config = tiny_hamer
        flags = ["--hand-keypoints", raised_hand_keypoints(tmp_path / "keypoints", "hand_clip")]
    else:
        reference = request.getfixturevalue("hamer_reference")
        checkpoint, config, flags = reference / "hamer_tiny.ckpt", reference / "config.json", []
    fields = hamer_features_of_one_clip(
        clip, tmp_path, checkpoint, config, "--hamer-tokens", *flags
    )
    hands, hamer, shape = (
        decode_npy(fields[f]) for f in ("hands.npy", "hamer.npy", "hamer_shape.npy")
    )
    assert "dinov2.npy" not in fields
    assert hands.shape == (58, 2, COLUMNS) and hands.dtype == np.float32
    assert hamer.shape == (58, 288) and hamer.dtype == np.float16 and shape.shape == (58, 2, 13)
    tokens = decode_npy(fields["hamer_tokens.npy"])
    assert tokens.shape == (58, 2, 64) and not tokens[~(hands[:, :, 0] > 0)].any()
    present = hands[:, :, 0] > 0
    assert present[:, 1].sum() >= 17
    blocks = {0: np.r_[0:135, 270:279], 1: np.r_[135:270, 279:288]}
    for slot, columns in blocks.items():
        assert not hamer[~present[:, slot]][:, columns].any()  # missing hand: zeros
        assert (np.abs(hamer[present[:, slot]][:, columns]).sum(axis=1) > 0).all()
    rotations = hamer[present[:, 1]][:, 135:270].astype(np.float32).reshape(-1, 15, 3, 3)
    assert np.allclose(
        rotations @ rotations.transpose(0, 1, 3, 2), np.eye(3), atol=1e-2
    )  # rotation matrices
    meta = json.loads(fields["json"])
    assert (
        meta["fields"]["hamer.npy"]["shape"] == [58, 288]
        and "hamer" in meta["provenance"]["features"]
    )


def test_hamer_without_a_checkpoint_says_where_to_get_it(tmp_path, generic_csv):
    result = prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        "generic",
        "--root",
        generic_csv,
        "--out",
        tmp_path / "o",
        "--features",
        "hamer",
    )
    assert result.exit_code == 1 and "hamer.ckpt" in result.output and "--hamer" in result.output


def test_boxes_from_a_keypoints_file_instead_of_mediapipe(tmp_path, generic_csv):
    """One clip with COCO-WholeBody keypoints, one with [T, 2, 21, 3], one without a file."""
    import csv

    rows = list(csv.DictReader(generic_csv.open()))
    folder = tmp_path / "keypoints"
    folder.mkdir()
    rng = np.random.default_rng(0)
    frames = 20  # more than any clip has
    wholebody = np.zeros((frames, 133, 3), np.float32)
    wholebody[:, 91:112, :2] = rng.uniform(10, 20, (frames, 21, 2))  # left hand, all confident
    wholebody[:, 91:112, 2] = 0.9
    np.save(folder / f"{rows[0]['id']}.npy", wholebody)
    per_hand = np.zeros((frames, 2, 21, 3), np.float32)
    per_hand[:, 1, :, :2] = rng.uniform(30, 40, (frames, 21, 2))
    per_hand[:, 1, :, 2] = 0.8
    per_hand[5, 1, :, 2] = 0.1  # not confident in frame 5: no hand there
    np.save(folder / f"{rows[1]['id']}.npy", per_hand)
    out = tmp_path / "out"
    result = run_generic(
        "features",
        generic_csv,
        out,
        "--features",
        "hands",
        "--hand-keypoints",
        folder,
        "--max-quarantine-share",
        1,
    )
    assert result.exit_code == 0, result.output
    samples = {k: f for s in (out / "shards").glob("*/*.tar") for k, f in iter_tar_samples(s)}
    first, second = (decode_npy(samples[rows[i]["id"]]["hands.npy"]) for i in (0, 1))
    assert (first[:, 0, 1] == SOURCE_KEYPOINTS).all() and not first[:, 1, 0].any()
    assert np.allclose(first[:, 0, 3:5], wholebody[: len(first), 91:112, :2].min(1))
    kept = np.arange(len(second)) != 5
    assert np.allclose(
        second[kept, 1, 7 : 7 + 63].reshape(-1, 21, 3)[:, :, :2],
        per_hand[: len(second), 1, :, :2][kept],
    )
    assert second[5, 1, 0] == 0 and second[4, 1, 0] == 1
    import pyarrow.parquet as pq

    quarantined = pq.read_table(out / "features" / "quarantine.parquet").to_pylist()
    assert (
        len(samples) == 2 and len(quarantined) == len(rows) - 2
    )  # clips without a file; the run goes on
    assert (
        f"no hand keypoints file {rows[2]['id']}.npy"
        in {q["id"]: q["detail"] for q in quarantined}[rows[2]["id"]]
    )
