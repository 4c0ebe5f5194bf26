"""The layout of a hands row (``hands.npy``: float32 ``[T, 2, COLUMNS]``), shared by whoever
writes it (MediaPipe, pose fallback, keypoint files) and whoever reads it (HaMeR crops, the
kinematic captioner, the report's contact sheet)."""

from __future__ import annotations

SLOTS = ("left", "right")  # the signer's own hands
SOURCE_NONE, SOURCE_HANDS, SOURCE_POSE, SOURCE_KEYPOINTS = 0, 1, 2, 3
LANDMARKS = 21
# one row per frame and slot: present, source, score, box x0 y0 x1 y1 (pixels),
# 21 x (x, y, z) in pixels (z: MediaPipe's relative depth, in pixels of width), 21 x (x, y) in [0, 1]
COLUMNS = 3 + 4 + LANDMARKS * 3 + LANDMARKS * 2
PRESENT, SOURCE = 0, 1
BOX = slice(3, 7)
LANDMARKS_PX = slice(7, 7 + LANDMARKS * 3)
