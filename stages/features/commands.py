"""Commands the features stage adds to ``prep`` (registered through ``FeaturesStage.commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import PrepError, handled_errors


def convert_hamer(
    checkpoint: Path = typer.Argument(..., help="HaMeR's hamer.ckpt (PyTorch Lightning)."),
    target: Path = typer.Argument(..., help="Where to write the .safetensors file."),
    hamer_config: Optional[Path] = typer.Option(
        None, help="JSON of architecture sizes (default: the released HaMeR's)."
    ),
) -> None:
    """Convert hamer.ckpt once into a pickle-free .safetensors with only the weights features need."""
    from stages.hands.hamer import HamerConfig, convert_to_safetensors

    with handled_errors():
        if target.suffix != ".safetensors":
            raise PrepError(f"target must end in .safetensors: {target}")
        config = HamerConfig.from_file(hamer_config) if hamer_config else None
        typer.echo(str(convert_to_safetensors(checkpoint, target, config)))
