"""Captioner adapters: one chunk request in, one caption out, whatever runs underneath.

Every backend has ``load()`` (lazy, inside the worker), ``__call__(requests) -> captions`` (a
batch of chunks, possibly from several clips) and ``identity`` (what the captions record).
``needs_frames`` / ``needs_hands`` tell the stage what to decode for a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.hand_captions.kinematic import VERSION as KINEMATIC_VERSION
from stages.hand_captions.kinematic import describe_chunk

INPUT_MODES = ("grid", "video")


@dataclass
class ChunkRequest:
    """One chunk to describe; ``frames`` / ``hands`` are filled only when the backend needs them."""

    key: tuple[str, int]  # (sample id, chunk index)
    frame_indices: list[int]  # chunk frames shown to the model, clip-relative
    fps: float
    width: int
    height: int
    frames: np.ndarray | None = None  # [n, H, W, 3] uint8, the picked frames
    hands: np.ndarray | None = None  # [chunk length, 2, COLUMNS], every frame of the chunk


@dataclass(frozen=True)
class Caption:
    text: str
    tokens: int  # generated tokens (words for the kinematic backend)


@dataclass(frozen=True)
class CaptionerIdentity:
    backend: str
    model: str
    revision: str
    prompt_hash: str | None
    input_mode: str | None


class KinematicCaptioner:
    """The offline describer: hand tracks in, a sentence per chunk out; no weights."""

    needs_frames, needs_hands = False, True

    def __init__(self, options: Any) -> None:
        self.identity = CaptionerIdentity(
            "kinematic", KINEMATIC_VERSION, KINEMATIC_VERSION, None, None
        )

    def load(self) -> None:
        return None

    def __call__(self, requests: list[ChunkRequest]) -> list[Caption]:
        texts = [describe_chunk(r.hands, r.width, r.height, r.fps) for r in requests]
        return [Caption(t, len(t.split())) for t in texts]
