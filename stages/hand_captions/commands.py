"""Commands the hand-captions stage adds to ``prep`` (registered through
``HandCaptionsStage.commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import handled_errors


def convert_captioner(
    source: Path = typer.Argument(
        ...,
        help="Original LLaVA-Llama checkpoint folder (config.json model_type llava_llama), e.g. "
        "ShareGPT4Video-8B (Lin-Chen/sharegpt4video-8b).",
    ),
    target: Path = typer.Argument(
        ..., help="New folder for the transformers LLaVA model, processor and chat template."
    ),
    vision_tower: Optional[Path] = typer.Option(
        None,
        help="Local CLIP folder the checkpoint's mm_vision_tower names, e.g. "
        "openai/clip-vit-large-patch14-336 downloaded (default: that name, as a folder or in "
        "the Hugging Face cache).",
    ),
) -> None:
    """Convert BeyondGloss's captioner (ShareGPT4Video-8B, original LLaVA format) once into a
    transformers LLaVA folder for --captioner-model; prints the files written."""
    from stages.hand_captions.convert_llava import convert_llava_checkpoint

    with handled_errors():
        for path in convert_llava_checkpoint(source, target, vision_tower):
            typer.echo(str(path))
