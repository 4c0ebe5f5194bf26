"""What one shard sample holds besides the features: its ``json`` and, optionally, its frames.

Per-sample annotations come from every registered stage that declares an ``Export``, by the
framework's rule (:mod:`pipeline.columns`), with no change to this stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.columns import json_columns
from stages.features.geometry import KEEP_ASPECT, stored_frame


def sample_json(
    row: dict, indices: np.ndarray, times: np.ndarray, fields: dict[str, dict], provenance: dict
) -> dict[str, Any]:
    """Everything a trainer needs to know about one sample, beside its arrays: ``frame_times``
    are each stored frame's seconds from the sample's start, read from the video's timestamps."""
    return {
        **json_columns(row),
        "frame_indices": [int(i) for i in indices],
        "frame_times": [round(float(t), 6) for t in times],
        "fields": fields,
        "provenance": provenance,
    }


@dataclass(frozen=True)
class FrameJpegs:
    """Decode-thread hook for ``--with-frames``: each frame brought to ``size``² as ``geometry``
    stores it (:func:`stages.features.geometry.stored_frame`: the same geometry as
    ``dinov2.npy``) and JPEG-encoded."""

    size: int = 256
    quality: int = 90
    geometry: str = KEEP_ASPECT

    def __call__(self, frames: np.ndarray, info: Any = None) -> list[bytes]:
        encoded = []
        for frame in frames:
            small = stored_frame(frame, self.geometry, self.size)
            ok, data = cv2.imencode(
                ".jpg",
                cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, self.quality],
            )
            if not ok:
                raise ValueError("JPEG encoding failed")
            encoded.append(data.tobytes())
        return encoded


def frame_field(position: int) -> str:
    """Field name of the ``position``-th stored frame; sorts in frame order."""
    return f"frame_{position:05d}.jpg"
