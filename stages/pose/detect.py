"""Landmark rows for a clip's frames, ``[n, K, 4]`` float32 (x, y, z, confidence): from MediaPipe
Holistic, or from keypoints another estimator made (``--pose-keypoints``).

Why Holistic rather than Pose + Hands: Holistic finds the hands from the body it tracks (it crops
each hand around that body's wrist), so both hands belong to the same person as the body, are
labelled with that person's own left and right (no mirroring question, unlike Hands' selfie
handedness), and a hand of someone else in the picture is never taken. Hands alone would find
every hand and leave the pairing to us.

Holistic runs in video mode, one graph per decode thread, reset at each clip, so results depend
only on the clip (byte-identical whatever the number of decode threads). Its settings are
MediaPipe's defaults: ``model_complexity=1`` (the only pose model inside the 0.10.21 wheel),
landmark smoothing on, detection and tracking confidence 0.5, no refined face landmarks.
"""

from __future__ import annotations

import importlib.metadata
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PrepError
from pipeline.video import ChunkInfo, DecodeError
from stages.pose.points import BODY, HAND, WHOLEBODY_POINTS, PointLayout, wholebody_points
from stages.pose.signer import SignerTrack, face_boxes, masked

INSTALL_HINT = "pip install 'prep[hands]' (mediapipe==0.10.21 with its Holistic models; numpy<2)"


def require_mediapipe():
    try:
        import mediapipe as mp
    except ImportError:
        raise PrepError(
            f"the pose feature needs MediaPipe: {INSTALL_HINT}, or pass --pose-keypoints"
        ) from None
    return mp


class _ThreadLocal:
    """Per-thread state (MediaPipe graphs hold their own threads and cannot be shared or
    pickled): dropped when the object is pickled for a worker process."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


class HolisticLandmarks(_ThreadLocal):
    """MediaPipe Holistic on each frame, after painting over other people's faces when
    ``signer`` is ``central`` (:mod:`stages.pose.signer`)."""

    def __init__(self, points: PointLayout, signer: str) -> None:
        super().__init__()
        self.points, self.signer = points, signer

    def load(self) -> None:
        require_mediapipe()

    @property
    def description(self) -> str:
        version = importlib.metadata.version("mediapipe")
        return f"mediapipe-holistic-{version} (video mode, model_complexity 1)"

    def rows(self, frames: np.ndarray, info: ChunkInfo) -> np.ndarray:
        holistic, faces, track = self._clip(info)
        height, width = frames.shape[1:3]
        rows = np.zeros((len(frames), self.points.count, 4), np.float32)
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            if faces is not None:
                others = track.others(face_boxes(faces.process(frame), width, height), width)
                if others:
                    frame = masked(frame, others)
            rows[i] = landmark_rows(holistic.process(frame), self.points, width, height)
        return rows

    def _clip(self, info: ChunkInfo) -> tuple[Any, Any, SignerTrack]:
        """This thread's graphs and the clip's signer track; a new clip resets the tracking."""
        local, key = self._local, (info.position, info.item["id"])
        if getattr(local, "holistic", None) is None:
            mp = require_mediapipe()
            local.holistic = mp.solutions.holistic.Holistic(static_image_mode=False)
            local.faces = (
                mp.solutions.face_detection.FaceDetection(model_selection=1)
                if self.signer == "central"
                else None
            )
            local.clip = key
            local.track = SignerTrack()
        elif local.clip != key:
            local.holistic.reset()
            local.clip, local.track = key, SignerTrack()
        return local.holistic, local.faces, local.track


def landmark_rows(result: Any, points: PointLayout, width: int, height: int) -> np.ndarray:
    """One Holistic result -> ``[K, 4]``: x, y in pixels, z as MediaPipe gives it, and the
    confidence: the body's visibility, 1 for a found hand or face (Holistic gives them no score,
    pose-format stores 1 too); everything 0 where a part is not found."""
    rows = np.zeros((points.count, 4), np.float32)
    parts = [
        (result.pose_landmarks, 0, None),
        (result.left_hand_landmarks, BODY, None),
        (result.right_hand_landmarks, BODY + HAND, None),
    ]
    if points.face_mesh:
        parts.append((result.face_landmarks, BODY + 2 * HAND, points.face_mesh))
    for found, start, keep in parts:
        if found is None:
            continue
        marks = found.landmark if keep is None else [found.landmark[i] for i in keep]
        body = start == 0
        rows[start : start + len(marks)] = [
            (p.x * width, p.y * height, p.z, p.visibility if body else 1.0) for p in marks
        ]
    return rows


class KeypointLandmarks(_ThreadLocal):
    """Rows from ``<folder>/<id>.npy``: COCO-WholeBody ``[T, 133, 3]`` (x, y px, score), one
    row per frame of the clip, mapped as :mod:`stages.pose.points` says; z is 0."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def load(self) -> None:
        pass

    @property
    def description(self) -> str:
        return f"keypoints-file ({self.folder.name}, COCO-WholeBody 133)"

    def rows(self, frames: np.ndarray, info: ChunkInfo) -> np.ndarray:
        sample_id = info.item["id"]
        loaded = getattr(self._local, "file", None)
        if loaded is None or loaded[0] != sample_id:
            loaded = (sample_id, load_keypoints(self.folder, sample_id, info.item["num_frames"]))
            self._local.file = loaded
        return wholebody_points(np.asarray(loaded[1][info.indices], np.float32))


def load_keypoints(folder: Path, sample_id: str, num_frames: int) -> np.ndarray:
    """One clip's ``[T, 133, 3]`` keypoints; any problem with the file is the clip's one-line
    reason (a quarantine row), never a crash: it is input, not code."""
    path = folder / f"{sample_id}.npy"
    if not path.is_file():
        raise DecodeError(f"no pose keypoints file {path.name} in {folder}")
    try:
        points = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        raise DecodeError(f"pose keypoints {path.name}: {exc}") from exc
    if points.ndim != 3 or points.shape[1:] != (WHOLEBODY_POINTS, 3):
        raise DecodeError(
            f"pose keypoints {path.name}: shape {points.shape}, expected [T, 133, 3] COCO-WholeBody"
        )
    if len(points) != num_frames:
        raise DecodeError(
            f"pose keypoints {path.name}: {len(points)} frames, the clip has {num_frames} "
            "(one row per frame of the clip, from its start)"
        )
    if not np.isfinite(points).all():
        raise DecodeError(f"pose keypoints {path.name}: NaN or infinite values")
    return points
