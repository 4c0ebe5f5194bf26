"""Captioner adapters: one chunk request in, one caption out, whatever runs underneath.

Every backend has ``load()`` (lazy, inside the worker), ``__call__(requests) -> captions`` (a
batch of chunks, possibly from several clips) and ``identity`` (what the captions record).
``needs_frames`` / ``needs_hands`` tell the stage what to decode for a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pipeline.errors import PrepError
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


def _transformers(options: Any):
    from stages.hand_captions.vlm import TransformersCaptioner

    return TransformersCaptioner(options)


def _vllm(options: Any):
    from stages.hand_captions.vllm_backend import VllmCaptioner

    return VllmCaptioner(options)


CAPTIONERS: dict[str, Callable[[Any], Any]] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "kinematic": KinematicCaptioner,
}


def make_captioner(options: Any):
    """The backend named by ``--captioner``, checked for what it needs before any work starts."""
    if options.captioner not in CAPTIONERS:
        raise PrepError(
            f"--captioner must be one of {', '.join(CAPTIONERS)}, got {options.captioner!r}"
        )
    if options.captioner != "kinematic":
        if not options.captioner_model:
            raise PrepError(
                f"--captioner {options.captioner} needs --captioner-model: a local VideoLLM folder (save_pretrained, "
                "e.g. Qwen2.5-VL-7B-Instruct) or a Hugging Face id already in the local cache; "
                "or pass --captioner kinematic for the offline describer"
            )
        if options.captioner_input not in INPUT_MODES:
            raise PrepError(
                f"--captioner-input must be grid or video, got {options.captioner_input!r}"
            )
    return CAPTIONERS[options.captioner](options)
