"""What ``prep demo`` runs the features stage with: no DINOv2 weights can be assumed offline,
so the demo writes a tiny randomly initialised one and loads it through the real code path."""

from __future__ import annotations

from pathlib import Path


def write_tiny_dinov2(folder: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised DINOv2 written with ``save_pretrained``: it exercises the
    real loading path offline (demo, tests). Its features are noise, not DINOv2 features."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
    )
    Dinov2Model(config).save_pretrained(folder)
    return folder
