"""Hand detection and tracking over a clip's frames, two slots per frame: the signer's left
hand (slot 0) and right hand (slot 1).

MediaPipe Hands (the models inside the ``mediapipe==0.10.21`` wheel) runs in video mode, so it
tracks through a clip. Its handedness assumes a mirrored (selfie) image; for ordinary camera
video its "Left" is the signer's right hand, which is what the slots record (``mirrored=True``
for selfie footage). Where it finds no hand for a slot, MediaPipe Pose's wrist, thumb, index
and pinky points give a fallback box (no landmarks), and the source column says so. With a
keypoints folder, boxes come from the user's own keypoints instead (``stages.hands.keypoints``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PrepError
from pipeline.video import DecodeError
from stages.hands.rows import BOX, COLUMNS, LANDMARKS, SLOTS, SOURCE_HANDS, SOURCE_POSE

POSE_POINTS = {"left": (15, 17, 19, 21), "right": (16, 18, 20, 22)}  # wrist, pinky, index, thumb
INSTALL_HINT = (
    "pip install 'prep[hands]' (mediapipe==0.10.21, the last wheel that carries its hand models)"
)


def require_mediapipe():
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        raise PrepError(f"the hands features need MediaPipe: {INSTALL_HINT}") from None
    import mediapipe as mp

    return mp


@dataclass
class _Trackers:
    position: int
    hands: object
    pose: object | None


class HandDetector:
    """Per thread: MediaPipe trackers reset at each new clip; ``detect`` is called with a
    clip's chunks in order and returns ``[n, 2, COLUMNS]`` float32 rows."""

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        pose_fallback: bool = True,
        mirrored: bool = False,
        keypoints: Path | None = None,
    ) -> None:
        self.min_confidence, self.pose_fallback, self.mirrored = (
            min_confidence,
            pose_fallback,
            mirrored,
        )
        self.keypoints = keypoints
        self._local = threading.local()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def load(self) -> None:
        if self.keypoints is None:
            require_mediapipe()

    @property
    def source(self) -> str:
        if self.keypoints is not None:
            return f"keypoints-file ({self.keypoints.name})"
        return "mediapipe-hands-0.10.21 (video mode)" + (
            " + mediapipe-pose fallback" if self.pose_fallback else ""
        )

    def detect(self, frames: np.ndarray, info: Any) -> np.ndarray:
        """``info``: the chunk's clip position, manifest row and frame indices (a ``ChunkInfo``)."""
        cached = getattr(self._local, "last", None)
        if cached is not None and cached[0] == info.position and cached[1] is frames:
            return cached[2]  # the hamer feature asks for the chunk the hands feature just did
        if self.keypoints is not None:
            rows = self._from_keypoints(frames, info)
        else:
            trackers = self._trackers(info.position)
            rows = np.zeros((len(frames), 2, COLUMNS), np.float32)
            for i, frame in enumerate(frames):
                rows[i] = self._frame(trackers, np.ascontiguousarray(frame))
        self._local.last = (info.position, frames, rows)
        return rows

    def _from_keypoints(self, frames: np.ndarray, info: Any) -> np.ndarray:
        from stages.hands.keypoints import keypoint_rows, load_hand_keypoints

        loaded = getattr(self._local, "keypoint_file", None)
        if loaded is None or loaded[0] != info.item["id"]:
            loaded = (info.item["id"], load_hand_keypoints(self.keypoints, info.item["id"]))
            self._local.keypoint_file = loaded
        points = loaded[1]
        if len(points) <= int(info.indices.max()):
            raise DecodeError(
                f"hand keypoints for {info.item['id']} cover {len(points)} frames, the clip has more"
            )
        height, width = frames.shape[1:3]
        return keypoint_rows(
            np.asarray(points[info.indices], np.float32), width, height, self.min_confidence
        )

    def _trackers(self, position: int) -> _Trackers:
        current = getattr(self._local, "trackers", None)
        if current is not None and current.position == position:
            return current
        mp = require_mediapipe()
        if current is None:
            hands = mp.solutions.hands.Hands(
                static_image_mode=False,
                max_num_hands=2,
                model_complexity=1,
                min_detection_confidence=self.min_confidence,
                min_tracking_confidence=self.min_confidence,
            )
            pose = (
                mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)
                if self.pose_fallback
                else None
            )
            current = _Trackers(position, hands, pose)
        else:
            current.hands.reset()
            if current.pose is not None:
                current.pose.reset()
            current.position = position
        self._local.trackers = current
        return current

    def _frame(self, trackers: _Trackers, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        rows = np.zeros((2, COLUMNS), np.float32)
        found = trackers.hands.process(frame)
        hands = []
        for landmarks, handedness in zip(
            found.multi_hand_landmarks or (), found.multi_handedness or ()
        ):
            points = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float32)
            label = handedness.classification[0].label.lower()
            slot = SLOTS.index(label) if self.mirrored else 1 - SLOTS.index(label)
            hands.append((slot, float(handedness.classification[0].score), points))
        for slot, score, points in assign_slots(hands, width):
            rows[slot] = hand_row(points, score, width, height)
        if trackers.pose is not None and not rows[:, 0].all():
            self._pose_fallback(trackers.pose, frame, rows)
        return rows

    def _pose_fallback(self, pose, frame: np.ndarray, rows: np.ndarray) -> None:
        height, width = frame.shape[:2]
        result = pose.process(frame)
        if result.pose_landmarks is None:
            return
        marks = result.pose_landmarks.landmark
        for slot, name in enumerate(SLOTS):
            points = [marks[i] for i in POSE_POINTS[name]]
            if rows[slot, 0] or points[0].visibility < 0.5:
                continue
            xy = np.array([(p.x * width, p.y * height) for p in points], np.float32)
            centre = xy.mean(0)
            if not (0 <= centre[0] < width and 0 <= centre[1] < height):
                continue  # pose guesses hands outside the picture; those are not boxes to crop
            low, high = xy.min(0), xy.max(0)
            pad = 0.5 * max(high - low) + 4.0
            rows[slot, :3] = (1.0, SOURCE_POSE, points[0].visibility)
            rows[slot, BOX] = (low[0] - pad, low[1] - pad, high[0] + pad, high[1] + pad)


def assign_slots(hands: list, width: int) -> list:
    """Slots come from MediaPipe's handedness; when both hands claim one slot, the hand further
    right in the image is the signer's left (unmirrored video)."""
    if len(hands) == 2 and hands[0][0] == hands[1][0]:
        right_most = max(range(2), key=lambda i: hands[i][2][:, 0].mean())
        hands = [(0 if i == right_most else 1, h[1], h[2]) for i, h in enumerate(hands)]
    return hands


def hand_row(points: np.ndarray, score: float, width: int, height: int) -> np.ndarray:
    row = np.zeros(COLUMNS, np.float32)
    pixels = points * np.array([width, height, width], np.float32)
    row[:3] = (1.0, SOURCE_HANDS, score)
    row[BOX] = (*pixels[:, :2].min(0), *pixels[:, :2].max(0))
    row[7 : 7 + LANDMARKS * 3] = pixels.reshape(-1)
    row[7 + LANDMARKS * 3 :] = points[:, :2].reshape(-1)
    return row
