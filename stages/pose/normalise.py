"""``--pose-normalise``: what the coordinates of ``pose.npy`` are measured from and in.

``none`` keeps pixels, so the field equals the ``.pose`` file. ``shoulders`` makes signers of any
size, distance and place in the picture comparable, as sign language models expect: in each
frame, x and y minus the midpoint of the two shoulders, and x, y, z divided by the distance
between the shoulders (z, which MediaPipe gives in units of the frame's width, first times that
width). It is per frame because an encoder sees batches of frames from several clips, never a
whole clip; pose-format's ``Pose.normalize`` does the per-clip variant on the ``.pose`` files.

A frame whose shoulders are not both found (confidence below :data:`SHOULDER_CONFIDENCE`) has
no reference: all its points and confidences are 0. Points not found (confidence 0) stay 0.
"""

from __future__ import annotations

import numpy as np

from stages.pose.points import LEFT_SHOULDER, RIGHT_SHOULDER

NORMALISE_CHOICES = ("none", "shoulders")
SHOULDER_CONFIDENCE = 0.5
MIN_SHOULDER_PIXELS = 1.0  # shoulders closer than this are a degenerate detection, not a scale


def normalise_rows(rows: np.ndarray, mode: str, width: int) -> np.ndarray:
    """``[n, K, 4]`` rows (x, y px, z, confidence) -> the same, normalised as ``mode`` says."""
    if mode == "none":
        return rows
    if mode != "shoulders":
        raise ValueError(f"unknown normalisation {mode!r}")
    values = rows.astype(np.float64)
    left, right = values[:, LEFT_SHOULDER], values[:, RIGHT_SHOULDER]
    scale = np.hypot(left[:, 0] - right[:, 0], left[:, 1] - right[:, 1])
    usable = (
        (left[:, 3] >= SHOULDER_CONFIDENCE)
        & (right[:, 3] >= SHOULDER_CONFIDENCE)
        & (scale >= MIN_SHOULDER_PIXELS)
    )
    out = np.zeros_like(values)
    centre = (left[usable, :2] + right[usable, :2]) / 2
    size = scale[usable][:, None]
    out[usable, :, :2] = (values[usable, :, :2] - centre[:, None]) / size[:, :, None]
    out[usable, :, 2] = values[usable, :, 2] * width / size
    out[usable, :, 3] = values[usable, :, 3]
    out[..., :3] *= (out[..., 3] > 0)[..., None]
    return out.astype(np.float32)


def describe(mode: str) -> str:
    """The provenance line of a normalisation: what the numbers in ``pose.npy`` mean."""
    if mode == "none":
        return (
            "x, y in pixels of the decoded frame (origin top left); z as MediaPipe gives it "
            "(units of the frame width; body from the hips' midpoint, hands from the wrist, face "
            "from its centre; 0 for keypoints files)"
        )
    return (
        "per frame: x, y minus the shoulders' midpoint (POSE_LANDMARKS 11, 12); x, y and z (z "
        "first times the frame width) divided by the shoulders' distance; frames without both "
        f"shoulders at confidence >= {SHOULDER_CONFIDENCE}: all 0; points not found: 0"
    )
