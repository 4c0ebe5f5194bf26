"""Hand boxes from keypoints the user already has (another pose estimator's output).

One ``<sample id>.npy`` per clip in a folder, float, covering every frame of the sample:
``[frames, 133, 3]`` COCO-WholeBody (x, y, confidence in pixels; the left hand is points
91-111, the right 112-132, the person's own hands) or ``[frames, 2, K, 3]`` (slot 0 the
signer's left hand, slot 1 the right). Files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.video import DecodeError
from stages.hands.rows import BOX, COLUMNS, LANDMARKS, SOURCE_KEYPOINTS

WHOLEBODY_POINTS = 133
WHOLEBODY_HANDS = (slice(91, 112), slice(112, 133))
MIN_POINTS = 3


def load_hand_keypoints(folder: Path, sample_id: str) -> np.ndarray:
    """``[frames, 2, K, 3]`` for one sample; a missing or malformed file is a clip error."""
    path = folder / f"{sample_id}.npy"
    if not path.is_file():
        raise DecodeError(f"no hand keypoints file {path.name} in {folder}")
    try:
        points = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        raise DecodeError(f"hand keypoints {path.name}: {exc}") from exc
    if points.ndim == 3 and points.shape[1:] == (WHOLEBODY_POINTS, 3):
        return np.stack([points[:, WHOLEBODY_HANDS[0]], points[:, WHOLEBODY_HANDS[1]]], axis=1)
    if points.ndim == 4 and points.shape[1] == 2 and points.shape[3] == 3:
        return points
    raise DecodeError(
        f"hand keypoints {path.name}: shape {points.shape} is neither [T, 133, 3] nor [T, 2, K, 3]"
    )


def keypoint_rows(points: np.ndarray, width: int, height: int, min_confidence: float) -> np.ndarray:
    """``[n, 2, K, 3]`` keypoints -> ``[n, 2, COLUMNS]`` hand rows (landmarks when K is 21)."""
    rows = np.zeros((len(points), 2, COLUMNS), np.float32)
    for i, frame in enumerate(points):
        for slot in (0, 1):
            valid = frame[slot][frame[slot, :, 2] >= min_confidence]
            if len(valid) < MIN_POINTS:
                continue
            rows[i, slot, :3] = (1.0, SOURCE_KEYPOINTS, valid[:, 2].mean())
            rows[i, slot, BOX] = (*valid[:, :2].min(0), *valid[:, :2].max(0))
            if frame.shape[1] == LANDMARKS:
                xyz = np.concatenate(
                    [frame[slot, :, :2], np.zeros((LANDMARKS, 1), np.float32)], axis=1
                )
                rows[i, slot, 7 : 7 + LANDMARKS * 3] = xyz.reshape(-1)
                rows[i, slot, 7 + LANDMARKS * 3 :] = (frame[slot, :, :2] / (width, height)).reshape(
                    -1
                )
    return rows
