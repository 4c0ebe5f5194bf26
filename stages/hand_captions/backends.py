"""``--captioner``: the backend by name, checked for what it needs before any work starts.

Kept apart from :mod:`stages.hand_captions.captioners` (the types every backend shares) so the
backends import those types and this module imports the backends, never the other way round.
"""

from __future__ import annotations

from typing import Any, Callable

from pipeline.errors import PrepError
from stages.hand_captions.captioners import INPUT_MODES, KinematicCaptioner


def _transformers(options: Any):
    from stages.hand_captions.vlm import TransformersCaptioner  # transformers loads on use

    return TransformersCaptioner(options)


def _vllm(options: Any):
    from stages.hand_captions.vllm_backend import VllmCaptioner  # vllm initialises CUDA

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
