"""``prep doctor`` checks of the hand-captions stage: the captioner and what it needs (hand
landmarks for the kinematic one; a local VideoLLM, its backend and a device for the others),
the optional refine LLM and the text encoder of the caption embeddings.

Models are only located (a folder, or the local Hugging Face cache); nothing is loaded, and
vllm is looked up rather than imported because importing it initialises CUDA.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from pipeline.doctor import Check, device_check, hub_or_folder, package_version
from pipeline.errors import PrepError
from stages.hands.checks import mediapipe_check

AREA = "hand-captions"
VIDEO_LLM_CAPTIONERS = ("transformers", "vllm")


def video_llm_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The VideoLLM (``--captioner-model``) and the library of the chosen backend."""
    captioner, model = options["captioner"], options.get("captioner_model")
    advice = (
        "pass --captioner-model with a folder written by save_pretrained (config.json + weights), or a "
        "Hugging Face id already in the local cache (`huggingface-cli download ID` on a machine with internet, "
        "then copy the cache here)"
    )
    if not model:
        checks = [Check(AREA, "VideoLLM", False, "no --captioner-model given", needed, advice)]
    else:
        ok, where = hub_or_folder(str(model))
        checks = [Check(AREA, "VideoLLM", ok, f"{model} ({where})", needed, f"{where}: {advice}")]
    library = "vllm" if captioner == "vllm" else "transformers"
    version = package_version(library)
    # vllm is looked up, not imported: importing it initialises CUDA and takes many seconds
    ok = version is not None and importlib.util.find_spec(library) is not None
    checks.append(
        Check(
            AREA,
            f"{captioner} backend",
            ok,
            f"{library} {version or 'not installed'}",
            needed,
            f"pip install {library}" + (" (needs a CUDA machine)" if library == "vllm" else ""),
        )
    )
    return checks


def refine_check(refine: str, needed: bool) -> Check:
    ok, where = hub_or_folder(refine)
    return Check(
        AREA,
        "refine LLM",
        ok,
        f"{refine} ({where})",
        needed,
        f"{where}: pass --refine-model with a text LLM folder (save_pretrained) or a cached "
        "Hugging Face id, or drop it (refinement is optional)",
    )


def text_encoder_check(encoder: str, needed: bool) -> Check:
    """The sentence encoder of the caption embeddings: the packaged default or a folder."""
    if encoder == "none":
        return Check(AREA, "text encoder", True, "none (no caption embeddings)", applies=False)
    from stages.hand_captions.embeddings import encoder_folder

    try:
        folder = encoder_folder(encoder)
    except PrepError as exc:
        return Check(AREA, "text encoder", False, str(encoder), needed, str(exc))
    return Check(
        AREA,
        "text encoder",
        (folder / "config.json").is_file(),
        f"{encoder} at {folder}",
        needed,
        f"{folder} has no config.json; reinstall the package or pass --text-encoder /folder",
    )


def doctor_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The stage's checks; the device matters only to the VideoLLM captioners, so only they
    return it (the framework keeps one device line if another stage returns it too)."""
    captioner = options["captioner"]
    checks = []
    if captioner in VIDEO_LLM_CAPTIONERS:
        checks += video_llm_checks(options, needed)
    else:
        checks.append(
            Check(
                AREA,
                "captioner",
                captioner == "kinematic",
                f"{captioner} (from hand landmarks)",
                needed,
                "--captioner takes kinematic, transformers or vllm",
            )
        )
        checks.append(mediapipe_check(AREA, options["hand_keypoints"], needed))
    refine = options.get("refine_model")
    if refine:
        checks.append(refine_check(str(refine), needed))
    checks.append(text_encoder_check(options["text_encoder"], needed))
    if captioner in VIDEO_LLM_CAPTIONERS:
        precision = options.get("captioner_precision") or options["precision"]  # the captioner's
        checks.append(device_check(options["device"], precision, needed))
    return checks
