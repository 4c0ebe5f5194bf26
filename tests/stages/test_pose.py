"""The pose feature through the CLI: MediaPipe Holistic on the real hand clip (the raised hand
found where it is), one row per selected frame, ``.pose`` files read back with pose-format,
keypoints from elsewhere, shoulder normalisation on a known input, byte-identical reruns; and
the choice of one person among several on frames made of the real clip side by side."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from pose_format import Pose

from pipeline.shards import decode_npy, iter_tar_samples
from pipeline.video import ChunkInfo, open_source
from stages.pose.checks import pose_checks
from stages.pose.detect import HolisticLandmarks
from stages.pose.points import BODY_LIMBS, BODY_POINTS, HAND_LIMBS, HAND_POINTS, PointLayout
from stages.pose.signer import SignerTrack, masked
from tests.conftest import HAND_CLIP_FPS, copy_beside, prep, run_generic
from tests.frames import decode_clip

R_SHOULDER, L_WRIST, R_WRIST, RIGHT_HAND = 12, 15, 16, 54
RAISED = (
    *range(19, 23),
    *range(29, 34),
)  # the real clip's right hand up at the face (it dips between)


def one_clip_csv(folder: Path, clip: Path) -> Path:
    annotations = folder / "clips.csv"
    annotations.write_text(
        f"id,path,text,language,split\nhand_clip,{copy_beside(clip, folder)},eine hand,de,test\n"
    )
    return annotations


def run_pose(root: Path, out: Path, *flags: object) -> None:
    result = run_generic("features", root, out, "--features", "pose", *flags)
    assert result.exit_code == 0, result.output


def samples(out: Path) -> dict[str, dict[str, bytes]]:
    return {k: f for s in sorted((out / "shards").rglob("*.tar")) for k, f in iter_tar_samples(s)}


def digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("shards", "pose")
        for p in sorted((out / folder).rglob("*"))
        if p.is_file()
    }


def test_every_second_frame_with_dinov2_and_pose_files_rerun_byte_identical(
    tmp_path, hand_clip, tiny_dinov2, request
):
    root = one_clip_csv(tmp_path, hand_clip)
    flags = ("--features", "dinov2,pose", "--dinov2", tiny_dinov2, "--frame-step", 2)
    one, two = tmp_path / "one", tmp_path / "two"
    for out in (one, two):
        result = run_generic("features", root, out, *flags, "--pose-files")
        assert result.exit_code == 0, result.output
    assert digests(one) == digests(two) and len(digests(one)) == 3  # tar, index, .pose
    fields = samples(one)["hand_clip"]
    pose, conf = decode_npy(fields["pose.npy"]), decode_npy(fields["pose_conf.npy"])
    selected = list(range(0, 58, 2))
    assert pose.shape == (29, 75, 3) and conf.shape == (29, 75)
    assert (
        pose.dtype == conf.dtype == np.float32 and decode_npy(fields["dinov2.npy"]).shape[0] == 29
    )
    meta = json.loads(fields["json"])
    assert meta["frame_indices"] == selected and meta["fields"]["pose.npy"]["shape"] == [29, 75, 3]
    read = Pose.read((one / "pose" / "test" / "hand_clip.pose").read_bytes())
    assert [c.name for c in read.header.components] == [
        "POSE_LANDMARKS",
        "LEFT_HAND_LANDMARKS",
        "RIGHT_HAND_LANDMARKS",
    ]
    assert (read.header.dimensions.width, read.header.dimensions.height) == (540, 720)
    assert read.body.fps == pytest.approx(float(HAND_CLIP_FPS) / 2)
    assert np.array_equal(read.body.data.data[:, 0], pose)
    assert np.array_equal(read.body.confidence[:, 0], conf)
    if request.node.callspec.params["hand_clip"] == "real":
        raised = [i for i, frame in enumerate(selected) if frame in RAISED]
        above = pose[raised, R_WRIST, 1] < pose[raised, R_SHOULDER, 1]  # y grows downwards
        assert above.mean() >= 0.75 and (conf[raised, R_WRIST] > 0.3).all()
        assert (conf[raised, RIGHT_HAND] == 1).sum() >= 4  # the raised hand's own landmarks


def test_every_frame_of_the_real_clip_normalised_to_the_shoulders(tmp_path, real_hand_clip):
    out = tmp_path / "out"
    run_pose(one_clip_csv(tmp_path, real_hand_clip), out, "--pose-normalise", "shoulders")
    fields = samples(out)["hand_clip"]
    pose, conf = decode_npy(fields["pose.npy"]), decode_npy(fields["pose_conf.npy"])
    assert pose.shape == (58, 75, 3)  # no frame dropped
    assert (conf[:, 11:13] >= 0.5).all()  # the shoulders, always in view
    left, right = pose[:, 11, :2], pose[:, 12, :2]
    assert np.allclose(left, -right, atol=1e-5)  # centred on their midpoint
    assert np.allclose(np.linalg.norm(left - right, axis=1), 1, atol=1e-5)  # one shoulder width
    rows = list(RAISED)
    assert (pose[rows, R_WRIST, 1] < pose[rows, R_SHOULDER, 1]).mean() >= 0.8
    assert (pose[:, L_WRIST, 1] > 0.5).all()  # the left hand rests low throughout
    recorded = json.loads(fields["json"])["provenance"]["features"]["pose"]
    assert recorded["normalise"] == "shoulders" and "shoulders' midpoint" in recorded["coordinates"]
    assert json.loads(fields["json"])["provenance"]["options"]["pose_normalise"] == "shoulders"


def test_face_lips_on_a_few_frames(tmp_path, real_hand_clip):
    out = tmp_path / "out"
    flags = ("--pose-face", "lips", "--max-frames", 4, "--pose-files")
    run_pose(one_clip_csv(tmp_path, real_hand_clip), out, *flags)
    fields = samples(out)["hand_clip"]
    pose, conf = decode_npy(fields["pose.npy"]), decode_npy(fields["pose_conf.npy"])
    assert pose.shape == (4, 75 + 40, 3) and (conf[:, 75:] == 1).all()
    nose, mouth = pose[:, 0, 1], pose[:, 75:, 1].mean(axis=1)
    assert ((mouth > nose) & (mouth < pose[:, R_SHOULDER, 1])).all()  # below the nose
    face = Pose.read((out / "pose" / "test" / "hand_clip.pose").read_bytes()).header.components[3]
    assert face.name == "FACE_LANDMARKS" and len(face.points) == 40 and "61" in face.points
    assert face.limbs and max(max(limb) for limb in face.limbs) < 40


def wholebody(frames: int, shoulders_y: float = 20.0) -> np.ndarray:
    """COCO-WholeBody keypoints: shoulders at (10, y) and (30, y), nose 10 px above their middle,
    the right wrist at (40, 5), the right hand's (112) at (41, 6), the left eye's inner corner
    (face point 42) at (24, y - 12); all confident."""
    points = np.zeros((frames, 133, 3), np.float32)
    points[:, :, 2] = 0.9
    points[:, 5, :2] = (30, shoulders_y)  # left shoulder: the person's left, image right
    points[:, 6, :2] = (10, shoulders_y)
    points[:, 0, :2] = (20, shoulders_y - 10)
    points[:, 10, :2] = (40, 5)  # right wrist (body)
    points[:, 112, :2] = (41, 6)  # right wrist (hand)
    points[:, 23 + 42, :2] = (24, shoulders_y - 12)
    return points


def test_keypoints_from_elsewhere_normalised_on_a_known_input(tmp_path, generic_csv):
    """Three clips with keypoints (one with an unsure shoulder in frame 2), one whose file is
    a frame short, one without a file; ``.pose`` files keep the pixels."""
    rows = list(csv.DictReader(generic_csv.open()))
    counts = {r["id"]: open_source(generic_csv.parent / r["path"]).num_frames for r in rows}
    folder = tmp_path / "keypoints"
    folder.mkdir()
    for i, row in enumerate(rows[:3]):
        points = wholebody(counts[row["id"]], shoulders_y=20 + i)
        points[2, 6, 2] = 0.2 if i == 0 else 0.9
        np.save(folder / f"{row['id']}.npy", points)
    np.save(folder / f"{rows[3]['id']}.npy", wholebody(counts[rows[3]["id"]] - 1))
    out = tmp_path / "out"
    flags = ("--pose-keypoints", folder, "--pose-normalise", "shoulders", "--pose-files")
    run_pose(generic_csv, out, *flags, "--max-quarantine-share", 1)
    found = samples(out)
    assert sorted(found) == sorted(r["id"] for r in rows[:3])
    first = rows[0]["id"]
    pose, conf = (decode_npy(found[first][f]) for f in ("pose.npy", "pose_conf.npy"))
    assert pose.shape == (counts[first], 75, 3)
    assert np.allclose(pose[0, 0], (0, -0.5, 0))  # nose: 10 px above the middle, 20 px wide
    assert np.allclose(pose[0, [11, 12], :2], [(0.5, 0), (-0.5, 0)])
    assert np.allclose(pose[0, R_WRIST], (1.0, -0.75, 0))
    assert np.allclose(pose[0, RIGHT_HAND], (1.05, -0.7, 0))
    assert np.allclose(pose[0, 1], (0.2, -0.6, 0))  # left eye inner: 300-W face point 42
    assert not pose[2].any() and not conf[2].any()  # no sure shoulder: no reference
    assert np.allclose(conf[0], 0.9)
    read = Pose.read((out / "pose" / rows[0]["split"] / f"{first}.pose").read_bytes())
    raw = read.body.data.data[:, 0]
    assert np.allclose(raw[:, R_WRIST, :2], (40, 5)) and np.allclose(raw[:, 11, :2], (30, 20))
    meta = json.loads(found[first]["json"])["provenance"]["features"]["pose"]
    assert meta["source"].startswith("keypoints-file") and meta["normalise"] == "shoulders"
    quarantine = pq.read_table(out / "features" / "quarantine.parquet").to_pylist()
    reasons = {q["id"]: q["detail"] for q in quarantine}
    assert (
        f"{counts[rows[3]['id']] - 1} frames, the clip has {counts[rows[3]['id']]}"
        in reasons[rows[3]["id"]]
    )
    assert f"no pose keypoints file {rows[4]['id']}.npy" in reasons[rows[4]["id"]]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--pose-normalise", "hips"), "--pose-normalise takes one of none, shoulders; got 'hips'"),
        (
            ("--pose-keypoints", "/no/such/folder"),
            "--pose-keypoints /no/such/folder: no such folder",
        ),
        (("--pose-face", "lips", "--pose-keypoints", "."), "drop one of them"),
    ],
)
def test_bad_pose_options_are_refused_before_any_work(tmp_path, generic_csv, flags, message):
    result = run_generic("features", generic_csv, tmp_path / "out", "--features", "pose", *flags)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "out" / "shards").exists()


def test_point_names_and_limbs_are_mediapipes():
    import mediapipe as mp

    holistic = mp.solutions.holistic
    assert BODY_POINTS == tuple(holistic.PoseLandmark._member_names_)
    assert HAND_POINTS == tuple(holistic.HandLandmark._member_names_)
    assert set(BODY_LIMBS) == {tuple(c) for c in holistic.POSE_CONNECTIONS}
    assert set(HAND_LIMBS) == {tuple(c) for c in holistic.HAND_CONNECTIONS}
    assert (
        PointLayout.with_face("lips").count == 115
        and PointLayout.with_face("contours").count == 203
    )


def test_doctor_checks_holistic_or_the_keypoints_folder(tmp_path):
    (holistic,) = pose_checks("features", {"pose_keypoints": None}, True)
    assert holistic.ok and holistic.component == "MediaPipe Holistic"
    missing, pose_format = pose_checks(
        "features", {"pose_keypoints": str(tmp_path / "none"), "pose_files": True}, True
    )
    assert not missing.ok and "--pose-keypoints" in missing.detail and pose_format.ok
    result = prep("doctor", "--stage", "features", "--features", "pose")
    assert "MediaPipe Holistic" in result.stdout


# -- one person among several ------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_frames(real_hand_clip) -> np.ndarray:
    return decode_clip(open_source(real_hand_clip)).frames[::10]  # 6 frames


def side_by_side(frames: np.ndarray, people: list[tuple[int, float]], width: int) -> np.ndarray:
    """Frames ``width`` wide holding the clip's person once per ``(left x, scale)``, feet down."""
    height, clip_width = frames.shape[1:3]
    out = np.full((len(frames), height, width, 3), 90, np.uint8)
    for x, scale in people:
        size = (int(clip_width * scale), int(height * scale))
        for i, frame in enumerate(frames):
            out[i, height - size[1] :, x : x + size[0]] = cv2.resize(
                frame, size, interpolation=cv2.INTER_AREA
            )
    return out


def nose_x(frames: np.ndarray, signer: str) -> np.ndarray:
    detector = HolisticLandmarks(PointLayout(), signer)
    rows = detector.rows(frames, ChunkInfo(0, {"id": "people"}, np.arange(len(frames))))
    assert (rows[:, 0, 3] > 0.5).all()
    return rows[:, 0, 0]


@pytest.mark.parametrize("big_on_the_left", [True, False])
def test_the_larger_of_two_people_is_followed(clip_frames, big_on_the_left):
    w = clip_frames.shape[2]
    big, small = (0, w) if big_on_the_left else (w, 0)
    frames = side_by_side(clip_frames, [(big, 1.0), (small + w // 4, 0.5)], 2 * w)
    nose = nose_x(frames, "central")
    assert ((nose >= big) & (nose < big + w)).all()


def test_of_two_equal_people_the_central_one_is_followed_not_mediapipes_pick(clip_frames):
    w = clip_frames.shape[2]
    frames = side_by_side(clip_frames, [(0, 1.0), (w, 1.0)], 3 * w)  # the second is central
    nose = nose_x(frames, "central")
    assert ((nose >= w) & (nose < 2 * w)).all()
    assert (nose_x(frames, "mediapipe") < w).all()  # MediaPipe alone takes the one on the left


def test_each_clip_starts_afresh_on_a_reused_graph(clip_frames):
    """One decode thread runs many clips on one graph: a reset one gives a fresh one's numbers."""
    detector = HolisticLandmarks(PointLayout(), "central")
    indices = np.arange(len(clip_frames))
    first = detector.rows(clip_frames, ChunkInfo(0, {"id": "a"}, indices))
    again = detector.rows(clip_frames, ChunkInfo(1, {"id": "b"}, indices))
    assert np.array_equal(first, again) and (first[:, 0, 3] > 0.5).all()


def test_the_signer_is_kept_when_a_larger_face_comes_in():
    track = SignerTrack()
    small, big = np.array([300.0, 100, 340, 150]), np.array([20.0, 80, 140, 230])
    assert track.others([small], 640) == [] and track.box is small
    assert track.others([big, small + 5], 640)[0] is big  # the newcomer is masked
    assert np.array_equal(track.box, small + 5)
    assert track.others([big], 640)[0] is big and np.array_equal(track.box, small + 5)
    frame = masked(np.zeros((240, 640, 3), np.uint8), [big])
    assert frame[150, 80].tolist() == [114] * 3 and not frame[120, 320].any()
