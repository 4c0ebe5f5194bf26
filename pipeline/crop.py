"""A signer box applied to every frame a source gives, as OpenASL's own clips were made.

OpenASL distributes a box per sample (``bbox-v1.0.json``, fractions of the frame) and a script
that cuts each clip out of the downloaded video with it (chevalierNoir/OpenASL
``prep/crop_video.py``): the box in pixels (``int`` of fraction x size, l.87-89), widened on
its shorter side to a square (l.18-24), the frame padded with black where the square leaves it
(l.25-31), the square cut out and resized to 224x224 (l.32-33, ``cv2.resize``'s default
bilinear filter; ``target_size=224``, l.56). :class:`CroppedSource` does the same to the frames
of any source, so a sample cut from the full video by prep sees what the official clip shows.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

CROP_SIZE = 224  # crop_video.py l.56


def square_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The official square, in pixels: ``(x0, y0, x1, y1)``, possibly past the frame."""
    x0, y0, x1, y1 = (
        int(box[0] * width),
        int(box[1] * height),
        int(box[2] * width),
        int(box[3] * height),
    )
    if x1 - x0 < y1 - y0:
        grow = (y1 - y0 - (x1 - x0)) / 2
        x0, x1 = x0 - grow, x1 + grow
    else:
        grow = (x1 - x0 - (y1 - y0)) / 2
        y0, y1 = y0 - grow, y1 + grow
    return int(x0), int(y0), int(x1), int(y1)


def crop_frame(frame: np.ndarray, square: tuple[int, int, int, int], size: int) -> np.ndarray:
    """One frame padded with black as far as the square needs, cut to it, resized to ``size``."""
    x0, y0, x1, y1 = square
    height, width = frame.shape[:2]
    left, up = max(-x0, 0), max(-y0, 0)
    right = x1 - width + 1 if x1 > width - 1 else 0  # crop_video.py l.27: one column more
    down = y1 - height + 1 if y1 > height - 1 else 0
    padded = cv2.copyMakeBorder(frame, up, down, left, right, cv2.BORDER_CONSTANT, value=0)
    roi = padded[y0 + up : y1 + up, x0 + left : x1 + left]
    return cv2.resize(roi, (size, size))


class CroppedSource:
    """A frame source whose frames are the official crop of another's; times stay the same."""

    def __init__(self, source: Any, box: Sequence[float], size: int = CROP_SIZE) -> None:
        self.source, self.size = source, size
        self.square = square_box(box, source.width, source.height)
        self.num_frames, self.fps = source.num_frames, source.fps
        self.width = self.height = size

    def read(self, indices: Sequence[int]) -> np.ndarray:
        frames = self.source.read(indices)
        out = np.empty((len(frames), self.size, self.size, 3), np.uint8)
        for position, frame in enumerate(frames):
            out[position] = crop_frame(frame, self.square, self.size)
        return out

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        return self.source.timestamps(indices)

    def __getattr__(self, name: str) -> Any:  # codec, timing, close: the source's own
        if name == "source":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)
