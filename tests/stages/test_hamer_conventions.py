"""HaMeR's left-hand convention, Hands-On's one-sided hands and HaMeR's anti-alias blur, each
checked against HaMeR's preprocessing and Hands-On's packing written out again here from the
papers' code (``hamer/datasets/vitdet_dataset.py``, ``hamer/datasets/utils.py``, ``demo.py``;
Hands-On ``data_prep/Extract_HaMeR_Single.py``), on the real hand clip with the reference
HaMeR's tiny checkpoint; then all of it through ``prep run`` with MediaPipe hands only."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pipeline.shards import decode_npy
from pipeline.video import ChunkInfo, open_source
from stages.hands.detect import HandDetector
from stages.hands.encoders import HamerEncoder
from stages.hands.hamer import load_hamer
from stages.hands.rows import SOURCE_HANDS
from tests.conftest import hamer_features_of_one_clip, missing, run_generic
from tests.frames import decode_clip

MEAN, STD = 255 * np.array([0.485, 0.456, 0.406]), 255 * np.array([0.229, 0.224, 0.225])
SIGN = np.outer([-1, 1, 1], [-1, 1, 1])  # entries of R that M R M negates, M = diag(-1, 1, 1)
# frames of the keypoints clip: which of (left, right) has a hand
PATTERN = [(1, 1), (1, 1), (1, 0), (0, 1), (0, 1), (0, 0), (1, 1), (1, 0)]
FIRST_FRAME = 18  # the raised hand is in view from here


def gaussian_filter():
    """scipy's filter, which HaMeR's ``skimage.filters.gaussian`` calls (with the hands extra)."""
    try:
        from scipy.ndimage import gaussian_filter
    except ImportError:
        missing("needs scipy (pip install 'prep[hands]' brings it)")
    return gaussian_filter


def crop_side(box: np.ndarray):
    """vitdet_dataset.py:40,55 and utils.py:14-33: the box doubled, widened to 192:256."""
    w, h = 2.0 * (box[2:4] - box[0:2]) / 200.0 * 200
    if h / w < 256 / 192:
        h = max(w * 256 / 192, h)
    else:
        w = max(h * 192 / 256, w)
    return np.array([w, h]).max()


def reference_crop(frame: np.ndarray, box, right: bool, blur: bool) -> np.ndarray:
    """ViTDetDataset.__getitem__ for one box, rescale 2.0 as demo.py passes it: float32 box
    arithmetic, the 192:256 expansion, the blur above 1.1x downsampling, the flip of the whole
    image for a left hand, then the three-point affine warp. RGB in, float32 HWC out."""
    box = np.asarray(box, np.float32)
    centre, side = (box[2:4] + box[0:2]) / 2.0, crop_side(box)
    image = frame
    factor = side * 1.0 / 256 / 2.0
    if blur and factor > 1.1:
        sigma = (factor - 1) / 2
        image = gaussian_filter()(
            frame.astype(np.float64), (sigma, sigma, 0), mode="nearest", truncate=4.0
        )
    cx, cy = centre
    if not right:
        image = image[:, ::-1]
        cx = image.shape[1] - cx - 1
    centre, half = np.array([cx, cy], np.float64), np.float32(side * 0.5)
    src = np.float32([centre, centre + np.float32([0, half]), centre + np.float32([half, 0])])
    dst = np.float32([[128, 128], [128, 256], [256, 128]])
    patch = cv2.warpAffine(
        np.ascontiguousarray(image),
        cv2.getAffineTransform(src, dst),
        (256, 256),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return patch.astype(np.float32)


def network(model, patches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """HaMeR's forward on crops normalised as vitdet_dataset.py:84-85 does."""
    images = np.stack([((p - MEAN) / STD).transpose(2, 0, 1) for p in patches]).astype(np.float32)
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(torch.from_numpy(images)).items()}


def hands_on_rows(model, frames, boxes, present, blur: bool = False) -> np.ndarray:
    """Hands-On's 288-d rows: per frame the detected hands, left first (lines 128-145), through
    HaMeR with the mirrored crop kept as the network answers (164-170); one hand is duplicated
    (191-194); pose then orient flattened (196-198); no hand: zeros (186)."""
    frame_slot = list(zip(*present.nonzero()))
    crops = [reference_crop(frames[i], boxes[i, s], s == 1, blur) for i, s in frame_slot]
    out = network(model, crops) if crops else {}
    rows = np.zeros((len(frames), 288), np.float32)
    for i in range(len(frames)):
        found = [k for k, (j, _) in enumerate(frame_slot) if j == i]  # left before right
        if not found:
            continue
        pose, orient = out["hand_pose"][found], out["global_orient"][found]
        if len(found) == 1:
            pose, orient = np.concatenate([pose, pose]), np.concatenate([orient, orient])
        rows[i] = np.concatenate([pose.reshape(-1), orient.reshape(-1)])
    return rows


@pytest.fixture(scope="module")
def reference_model(hamer_reference):
    return load_hamer(hamer_reference / "hamer_tiny.ckpt", hamer_reference / "config.json")


@pytest.fixture(scope="module")
def real_frames(real_hand_clip) -> np.ndarray:
    return decode_clip(open_source(real_hand_clip)).frames


def hand_points(rng, box) -> np.ndarray:
    """21 confident points spread over ``box`` (two on its corners, so it is their extent)."""
    x0, y0, x1, y1 = box
    points = np.stack([rng.uniform(x0, x1, 21), rng.uniform(y0, y1, 21), np.full(21, 0.9)], 1)
    points[0, :2], points[1, :2] = (x0, y0), (x1, y1)
    return points


def keypoint_clip(folder, frames, rng, boxes) -> tuple[HandDetector, np.ndarray, np.ndarray]:
    """A ``[T, 2, 21, 3]`` keypoints file (id ``clip``) for ``boxes`` (``[T, 2, 4]``, NaN: no
    hand); returns a detector reading it, the boxes as float32 and the presence mask."""
    points = np.zeros((len(frames), 2, 21, 3), np.float32)
    present = ~np.isnan(boxes[:, :, 0])
    for i, slot in zip(*present.nonzero()):
        points[i, slot] = hand_points(rng, boxes[i, slot])
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "clip.npy", points)
    return HandDetector(keypoints=folder), np.nan_to_num(boxes).astype(np.float32), present


def encode(reference, detector, frames, **conventions) -> tuple[dict, object]:
    encoder = HamerEncoder(
        detector,
        str(reference / "hamer_tiny.ckpt"),
        str(reference / "config.json"),
        device="cpu",
        precision="fp32",
        **conventions,
    )
    encoder.load()
    prepared = encoder.host_prepare(frames, ChunkInfo(0, {"id": "clip"}, np.arange(len(frames))))
    return encoder(prepared), prepared


@pytest.fixture
def two_hands(tmp_path, real_frames):
    """8 real frames; the right hand around the raised hand, a left hand lower in the picture,
    present as PATTERN says."""
    rng = np.random.default_rng(7)
    frames = real_frames[FIRST_FRAME : FIRST_FRAME + len(PATTERN)]
    boxes = np.full((len(frames), 2, 4), np.nan)
    for i, (left, right) in enumerate(PATTERN):
        if left:
            x, y = rng.uniform(330, 360), rng.uniform(420, 450)
            boxes[i, 0] = (x, y, x + rng.uniform(70, 110), y + rng.uniform(90, 130))
        if right:
            x, y = rng.uniform(50, 80), rng.uniform(190, 220)
            boxes[i, 1] = (x, y, x + rng.uniform(220, 250), y + rng.uniform(150, 180))
    return frames, *keypoint_clip(tmp_path / "keypoints", frames, rng, boxes)


def test_left_hands_as_the_network_gives_them_or_mirrored_back(
    two_hands, hamer_reference, reference_model
):
    frames, detector, boxes, present = two_hands
    as_network, _ = encode(hamer_reference, detector, frames, left_hands="as-network")
    unmirrored, _ = encode(hamer_reference, detector, frames)  # the default
    left = present[:, 0]
    out = network(
        reference_model,
        [reference_crop(f, b, False, False) for f, b in zip(frames[left], boxes[left, 0])],
    )
    hamer = as_network["hamer.npy"][left]
    assert np.abs(hamer[:, :135] - out["hand_pose"].reshape(-1, 135)).max() <= 1e-5
    assert np.abs(hamer[:, 270:279] - out["global_orient"].reshape(-1, 9)).max() <= 1e-5
    cam = out["cam"] * [1, -1, 1]  # demo.py:136-138: only the camera's x is negated
    assert np.abs(as_network["hamer_shape.npy"][left, 0, 10:] - cam).max() <= 1e-5
    assert np.array_equal(unmirrored["hamer_shape.npy"], as_network["hamer_shape.npy"])

    mirrored_back = unmirrored["hamer.npy"][left]
    sign = np.concatenate([np.tile(SIGN.reshape(-1), 15), np.zeros(135), SIGN.reshape(-1)])
    assert np.array_equal(mirrored_back[:, :135], hamer[:, :135] * sign[:135])
    assert np.array_equal(mirrored_back[:, 270:279], hamer[:, 270:279] * SIGN.reshape(-1))
    changed = (np.sign(mirrored_back[:, :135]) != np.sign(hamer[:, :135])).sum(axis=1)
    assert (changed == 60).all()  # 4 of each rotation's 9 entries, 15 joints
    right = np.r_[135:270, 279:288]
    assert np.array_equal(unmirrored["hamer.npy"][:, right], as_network["hamer.npy"][:, right])


def test_one_sided_hands_are_copied_as_hands_on_does(two_hands, hamer_reference, reference_model):
    frames, detector, boxes, present = two_hands
    copied, _ = encode(
        hamer_reference, detector, frames, left_hands="as-network", missing_hand="copy-other"
    )
    expected = hands_on_rows(reference_model, frames, boxes, present)
    assert np.abs(copied["hamer.npy"] - expected).max() <= 1e-5
    zeros, _ = encode(hamer_reference, detector, frames, left_hands="as-network")
    one = present.sum(axis=1) == 1
    assert one.sum() == 4 and not present[5].any()
    assert np.array_equal(copied["hamer.npy"][~one], zeros["hamer.npy"][~one])
    assert not copied["hamer.npy"][5].any()  # no hand: zeros either way
    for slot, columns in ((0, np.r_[0:135, 270:279]), (1, np.r_[135:270, 279:288])):
        assert not zeros["hamer.npy"][~present[:, slot]][:, columns].any()
    # camera and shape are per detected hand (Hands-On keeps pred_cam per hand): not copied
    assert np.array_equal(copied["hamer_shape.npy"], zeros["hamer_shape.npy"])
    assert not copied["hamer_shape.npy"][~present].any()


def test_large_crops_are_blurred_first_as_hamer_does(
    tmp_path, real_frames, hamer_reference, reference_model
):
    """The raised hand of two real frames (crop sides 1000 and 671 px, sigma 0.48 and 0.16), and
    a left box each just under (560 px: no blur) and just over (566 px: a one-tap kernel, but
    the crop is cut from the float frame, so not rounded) HaMeR's 563.2 px."""
    frames = real_frames[[30, 31]]
    boxes = np.array(
        [
            [(300, 300, 400, 580), (20, 100, 370, 600)],
            [(300, 300, 400, 583), (65.8, 211.0, 317.4, 378.3)],
        ]
    )
    detector, boxes, present = keypoint_clip(
        tmp_path / "keypoints", frames, np.random.default_rng(3), boxes
    )
    blurred, prepared = encode(
        hamer_reference, detector, frames, left_hands="as-network", blur=True
    )
    plain, plain_prepared = encode(hamer_reference, detector, frames, left_hands="as-network")
    crops, plain_crops = prepared.crops.numpy(), plain_prepared.crops.numpy()
    assert crops.dtype == np.float32 and plain_crops.dtype == np.uint8
    for i, slot in ((0, 0), (0, 1), (1, 0), (1, 1)):
        frame, box, right = frames[i], boxes[i, slot], slot == 1
        assert np.array_equal(crops[i, slot], reference_crop(frame, box, right, blur=True))
        assert np.array_equal(plain_crops[i, slot], reference_crop(frame, box, right, blur=False))
    assert np.array_equal(crops[0, 0], plain_crops[0, 0])  # 560 px: not blurred
    assert (crops[1, 0] != np.round(crops[1, 0])).mean() > 0.5  # 566 px: float, unrounded
    assert np.abs(crops[0, 1] - plain_crops[0, 1]).max() >= 5  # sigma 0.48: visibly blurred
    expected = hands_on_rows(reference_model, frames, boxes, present, blur=True)
    assert np.abs(blurred["hamer.npy"] - expected).max() <= 1e-5
    assert np.abs(plain["hamer.npy"] - blurred["hamer.npy"]).max() > 1e-4


def test_the_papers_hamer_features_through_the_cli(
    tmp_path, real_hand_clip, real_frames, hamer_reference, reference_model
):
    """MediaPipe hands only (no pose-fallback boxes), HaMeR's left hands, Hands-On's copies
    and HaMeR's blur on the real clip, whose raised hand gives crops up to 887 px."""
    fields = hamer_features_of_one_clip(
        real_hand_clip,
        tmp_path,
        hamer_reference / "hamer_tiny.ckpt",
        hamer_reference / "config.json",
        "--hamer-left-hands",
        "as-network",
        "--hamer-missing-hand",
        "copy-other",
        "--hamer-blur",
        "--no-pose-fallback",
    )
    hands, hamer = decode_npy(fields["hands.npy"]), decode_npy(fields["hamer.npy"])
    present = hands[:, :, 0] > 0
    assert (hands[present][:, 1] == SOURCE_HANDS).all()  # only hands MediaPipe found
    assert present[:, 0].sum() >= 1 and present[:, 1].sum() >= 15 and (~present).all(1).any()
    sides = [crop_side(box) for box in hands[present][:, 3:7]]
    assert sum(side > 563.2 for side in sides) >= 5  # crops HaMeR blurs first
    expected = hands_on_rows(reference_model, real_frames, hands[:, :, 3:7], present, blur=True)
    assert np.abs(hamer.astype(np.float32) - expected).max() <= 2e-3  # stored as float16
    provenance = json.loads(fields["json"])["provenance"]["features"]["hamer"]
    assert "as the network gives them" in provenance["left_hands"]
    assert "both halves" in provenance["missing_hand"]
    assert provenance["blur"].startswith("frame blurred")


def test_an_unknown_convention_is_refused_before_any_work(tmp_path, generic_csv, tiny_hamer):
    checkpoint, config = tiny_hamer
    flags = ["--features", "hamer", "--hamer", checkpoint, "--hamer-config", config]
    for flag, value, choices in (
        ("--hamer-left-hands", "mirrored", "unmirrored, as-network"),
        ("--hamer-missing-hand", "copy", "zeros, copy-other"),
    ):
        result = run_generic("features", generic_csv, tmp_path / "out", *flags, flag, value)
        assert result.exit_code == 1
        assert f"{flag} takes one of {choices}; got '{value}'" in result.output
        assert not (tmp_path / "out" / "shards").exists()
