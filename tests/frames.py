"""Every selected frame of a clip in one array: what tests and benchmarks compare against
ffmpeg. Production code streams (:func:`pipeline.video.iter_clip`) so long clips stay small."""

from __future__ import annotations

import numpy as np

from pipeline.video import Clip, FrameSelection, FrameSource, iter_clip


def decode_clip(source: FrameSource, selection: FrameSelection = FrameSelection()) -> Clip:
    """All selected frames of a sample at once (use :func:`iter_clip` for long clips)."""
    parts = list(iter_clip(source, selection))
    if not parts:
        empty = np.zeros((0, source.height, source.width, 3), np.uint8)
        return Clip(empty, np.zeros(0), np.zeros(0, np.int64))
    return Clip(
        np.concatenate([p.frames for p in parts]),
        np.concatenate([p.timestamps for p in parts]),
        np.concatenate([p.indices for p in parts]),
    )
