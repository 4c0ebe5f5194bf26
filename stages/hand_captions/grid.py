"""What a VideoLLM sees of one chunk: the frames picked inside it, tiled into one image
(BeyondGloss ``grid`` mode) or passed as a short video with their timestamps (``video`` mode)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

SEPARATOR_PX = 50  # white gap between tiles (BeyondGloss)
MAX_SIDE_PX = 1920  # the grid image is downscaled so its longest side is at most this


def pick_frames(start: int, end: int, count: int) -> list[int]:
    """``count`` frame numbers spread evenly over ``[start, end)``; 0 or more than there are: all."""
    total = end - start
    if count <= 0 or count >= total:
        return list(range(start, end))
    return [start + int((i + 0.5) * total / count) for i in range(count)]


def grid_image(
    frames: np.ndarray, separator: int = SEPARATOR_PX, max_side: int = MAX_SIDE_PX
) -> np.ndarray:
    """``[n, H, W, 3]`` uint8 -> one image of ceil(sqrt n) x ceil(sqrt n) tiles in reading order,
    white separators between them, white where tiles are missing; longest side <= ``max_side``
    (BeyondGloss ``describe_segments.py`` l.47-87: ``create_frame_grid``, ``resize_image_grid``)."""
    count, height, width = frames.shape[:3]
    side = math.ceil(math.sqrt(count))
    canvas = np.full(
        (side * height + (side - 1) * separator, side * width + (side - 1) * separator, 3),
        255,
        np.uint8,
    )
    for i, frame in enumerate(frames):
        top, left = (i // side) * (height + separator), (i % side) * (width + separator)
        canvas[top : top + height, left : left + width] = frame
    height, width = canvas.shape[:2]
    if max(width, height) > max_side:  # as BeyondGloss: sizes truncated, PIL bilinear
        scale = max_side / max(width, height)  # (describe_segments.py l.77-87)
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        canvas = np.array(Image.fromarray(canvas).resize(size, Image.BILINEAR))
    return canvas
