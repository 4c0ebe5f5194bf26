"""What an original LLaVA-Llama checkpoint (``model_type llava_llama``, ShareGPT4Video-8B) holds,
and how the original code (ShareGPT4Omni/ShareGPT4Video ``llava/``) reads it: the config fields
the converter can reproduce, the weight files (safetensors or ``.bin``, indexed or single), the
weight names, and the CLIP folder its vision tower and image preprocessing come from.

The vision tower is built empty (``delay_load``, model/llava_arch.py l.33-35) and filled from the
CLIP folder ``mm_vision_tower`` names once the checkpoint is loaded (model/builder.py l.192-197,
multimodal_encoder/clip_encoder.py l.22 and l.29-30): that folder's weights count, and a copy in
the checkpoint only when ``unfreeze_mm_vision_tower`` builds the tower first (clip_encoder.py
l.19-20), as ShareGPT4Video's full fine-tune does (scripts/train/8b/
lora_full_finetune_181k_add-share28k.sh l.40). The CLIP folder's config and image processor are
needed either way; without internet it must be local: ``--vision-tower``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError

ORIGINAL_MODEL_TYPE = "llava_llama"
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, CLIP's default resample
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PROJECTOR_LAYERS = {"0": "linear_1", "2": "linear_2"}  # nn.Sequential(Linear, GELU, Linear)
ORIGINAL_TOWER = "model.vision_tower.vision_tower."  # CLIPVisionTower.vision_tower: CLIPVisionModel
LANGUAGE_MODEL = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")
CLIP_VISION_PARTS = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PrepError(f"{path} is not valid JSON ({exc})") from None


def original_config(source: Path) -> dict[str, Any]:
    """The original config.json, refused unless it is a LLaVA-Llama this converter reproduces."""
    path = source / "config.json"
    if not path.is_file():
        raise PrepError(f"{source} has no config.json: pass an original LLaVA checkpoint folder")
    config = read_json(path)
    kind = config.get("model_type")
    if kind != ORIGINAL_MODEL_TYPE:
        raise PrepError(
            f"{path} has model_type {kind!r}, not {ORIGINAL_MODEL_TYPE!r}: only original "
            "LLaVA-Llama checkpoints (e.g. ShareGPT4Video-8B) are converted"
        )
    refusals = {
        "mm_projector_type": (config.get("mm_projector_type", "linear") != "mlp2x_gelu"),
        "mm_vision_select_feature": (
            config.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch")
        ),
        "mm_use_im_start_end": bool(config.get("mm_use_im_start_end")),
        "s2": bool(config.get("s2")),
        "mm_vision_tower": "siglip" in str(config.get("mm_vision_tower", "")).lower(),
    }
    for field, refused in refusals.items():
        if refused:
            raise PrepError(
                f"{path}: {field} {config.get(field)!r} has no transformers LLaVA equivalent "
                "(supported: an mlp2x_gelu projector on a CLIP tower, no image start/end tokens)"
            )
    for field in ("mm_vision_tower", "vocab_size"):
        if field not in config:
            raise PrepError(f"{path} has no {field}: not an original LLaVA-Llama config")
    return config


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files in shard order: safetensors or ``.bin``, indexed or single."""
    for name in WEIGHT_INDEXES:
        if (folder / name).is_file():
            shards = sorted(set(read_json(folder / name).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing or not shards:
                raise PrepError(f"{folder / name} lists missing shards: {', '.join(missing)}")
            return [folder / s for s in shards]
    for name in SINGLE_WEIGHTS:
        if (folder / name).is_file():
            return [folder / name]
    raise PrepError(f"{folder} has no weights ({' or '.join(SINGLE_WEIGHTS + WEIGHT_INDEXES)})")


def read_weights(path: Path) -> dict[str, Any]:
    """One weight file; ``.bin`` through prep's tensor-only unpickler, never running its code."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from pipeline.unpickle import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PrepError(f"{path.name} is not a state dict of tensors")
    return dict(state)


def vision_tower_folder(original: dict[str, Any], source: Path, given: Path | None) -> Path:
    """``--vision-tower``, else ``mm_vision_tower`` as a folder or a Hugging Face id in the
    local cache (the original loads it by that name, clip_encoder.py l.29-30)."""
    name = str(original["mm_vision_tower"])
    if given is not None:
        if not (given.expanduser() / "config.json").is_file():
            raise PrepError(f"--vision-tower {given} is not a CLIP folder (no config.json)")
        return given.expanduser()
    if (Path(name).expanduser() / "config.json").is_file():
        return Path(name).expanduser()
    from pipeline.models import locate_model

    try:
        return locate_model(name, "vision tower", "--vision-tower").folder
    except PrepError:
        raise PrepError(
            f"the CLIP vision tower {name!r} (mm_vision_tower in {source / 'config.json'}) is not "
            f"available offline: download it (huggingface-cli download {name} --local-dir DIR) "
            "and pass --vision-tower DIR"
        ) from None


def clip_vision_config(folder: Path):
    """The tower's CLIPVisionConfig, from a CLIPVisionModel or a whole CLIPModel folder."""
    from transformers import CLIPVisionConfig

    kind = read_json(folder / "config.json").get("model_type")
    if kind not in ("clip", "clip_vision_model"):
        raise PrepError(f"--vision-tower {folder} is a {kind!r} model, not CLIP")
    return CLIPVisionConfig.from_pretrained(folder, local_files_only=True)


def clip_preprocessing(folder: Path) -> dict[str, Any]:
    """CLIP's image processor settings (clip_encoder.py l.29), old integer sizes normalised."""
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise PrepError(f"--vision-tower {folder} has no preprocessor_config.json")
    raw = read_json(path)
    size, crop = raw.get("size", 224), raw.get("crop_size", 224)
    edge = size if isinstance(size, int) else size.get("shortest_edge")
    if not isinstance(edge, int):
        raise PrepError(f"{path}: size {size!r} is not CLIP's shortest-edge resize")
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    return {
        "edge": edge,
        "crop_size": {"height": crop["height"], "width": crop["width"]},
        "do_center_crop": raw.get("do_center_crop", True),
        "resample": raw.get("resample", BICUBIC),
        "do_rescale": raw.get("do_rescale", True),
        "rescale_factor": raw.get("rescale_factor", 1 / 255),
        "do_normalize": raw.get("do_normalize", True),
        "image_mean": raw.get("image_mean", list(OPENAI_CLIP_MEAN)),
        "image_std": raw.get("image_std", list(OPENAI_CLIP_STD)),
    }


def renamed(key: str, own_vision: bool) -> str | None:
    """An original weight's name in the llava-hf layout, which transformers 4 and 5 and vLLM
    all load; ``None`` for what the original does not use."""
    if key.startswith(ORIGINAL_TOWER):
        return tower_name(key.removeprefix(ORIGINAL_TOWER)) if own_vision else None
    if key.startswith("model.mm_projector."):
        layer, rest = key.removeprefix("model.mm_projector.").split(".", 1)
        if layer not in PROJECTOR_LAYERS:
            raise PrepError(f"unexpected projector weight {key} for mlp2x_gelu")
        return f"multi_modal_projector.{PROJECTOR_LAYERS[layer]}.{rest}"
    if key == "model.image_newline" or key.endswith("rotary_emb.inv_freq"):
        return None
    if key.startswith(LANGUAGE_MODEL):
        return "language_model." + key
    raise PrepError(f"unexpected weight {key} in the checkpoint: not an original LLaVA-Llama")


def tower_name(key: str) -> str | None:
    """A CLIP weight's llava-hf name (``vision_tower.vision_model.*``); ``None`` for CLIP's text
    half, projections and buffers. transformers 5 saves a CLIPVisionModel without the
    ``vision_model.`` level that CLIPModel and transformers 4 write."""
    part = key.removeprefix("vision_model.")
    if key.startswith("text_model.") or not part.startswith(CLIP_VISION_PARTS):
        return None
    return None if part.endswith("position_ids") else "vision_tower.vision_model." + part
