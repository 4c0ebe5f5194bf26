"""``prep convert-captioner``: ShareGPT4Video-8B, the captioner BeyondGloss ran, turned once from
LLaVA's original ``llava_llama`` checkpoint format (which transformers' Auto classes cannot load)
into a transformers LLaVA folder (``LlavaForConditionalGeneration`` + ``LlavaProcessor``) for the
``transformers`` and ``vllm`` captioner backends.

What the original code runs (ShareGPT4Omni/ShareGPT4Video, ``llava/``) and how the folder
reproduces it:

- Vision tower: the CLIP folder ``mm_vision_tower`` names (see
  :mod:`stages.hand_captions.llava_original`), ``--vision-tower`` where it is not cached.
- Features: CLIP hidden state ``mm_vision_select_layer``, CLS dropped for ``patch``
  (clip_encoder.py l.35-43) -> ``vision_feature_layer``, strategy ``default`` (``full`` for
  ``cls_patch``). Projector ``mlp2x_gelu`` is Linear, GELU, Linear (multimodal_projector/
  builder.py l.39-46) -> ``multi_modal_projector.linear_1`` / ``linear_2``, exact GELU.
- The features replace the prompt's one ``<image>`` (IMAGE_TOKEN_INDEX -200, constants.py l.8;
  llava_arch.py l.242-267); transformers repeats an added ``<image>`` token once per feature and
  scatters the features there: the same embedding sequence.
- Image: BeyondGloss passes ``process_images(...)[0]`` (describe_segments.py l.96, as run.py
  l.70). ShareGPT4Video-8B is trained with ``image_aspect_ratio anyres`` (both
  scripts/train/8b/*.sh), for which process_images stacks the image squashed to CLIP's input size
  plus its tiles (mm_utils.py l.119-148, l.177-180); ``[0]`` leaves that 4-D stack, which is
  encoded as a plain batch (llava_arch.py l.152 false -> l.200-201) of which only the first entry,
  the squashed image, is spliced (l.259). So for ``anyres`` the processor resizes to edge x edge
  (bicubic, PIL's default for ``Image.resize``, mm_utils.py l.142-143) then normalises as CLIP's
  processor does; ``pad`` first pads to a square in the mean colour (mm_utils.py l.155-175 ->
  ``do_pad``); anything else is CLIP's processor as is (l.181-182). With transformers' PIL image
  backend this is exact; its default torchvision backend resizes within one grey level of PIL.
- Prompt: conversation template ``llava_llama_3`` (describe_segments.py l.174; conversation.py
  l.392-401 joined in MPT style, l.67-75), image first (describe_segments.py l.157) -> the chat
  template. The original tokenises the text around ``<image>`` with the tokenizer's own BOS and
  keeps one (mm_utils.py l.188-207), so the template's literal ``<|begin_of_text|>`` follows the
  tokenizer's BOS: two of them, as in the original.
- Vocabulary: as transformers' converter does (models/llava/convert_llava_weights_to_hf.py
  l.105-108, l.154-172), ``<image>`` (and ``<pad>`` where there is none) are added and the
  embeddings padded to a multiple of 64. The new rows are the mean of the old ones rather than
  samples around it: deterministic bytes, and a new token's logit is the mean logit, never the
  greedy pick. ``model.image_newline`` (``spatial_unpad``) is unused on this path and dropped
  (the converter does the same, l.80-82).

Not reproduced: the original cuts the embedded sequence at ``tokenizer_model_max_length``
(llava_arch.py l.272-276); captioning prompts stay far below it. In fp32 the folder gives the
original's logits; in fp16, as BeyondGloss runs it, transformers 5 rounds the CLIP attention and
the projector's first bias differently, which ``--captioner-compute original`` undoes
(:mod:`stages.hand_captions.original_numerics`; ``--recipe beyondgloss`` sets it).
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import PrepError
from stages.hand_captions.llava_original import (
    BICUBIC,
    clip_preprocessing,
    clip_vision_config,
    original_config,
    read_json,
    read_weights,
    renamed,
    tower_name,
    vision_tower_folder,
    weight_files,
)

log = logging.getLogger(__name__)

IMAGE_TOKEN, PAD_TOKEN = "<image>", "<pad>"
VOCAB_MULTIPLE = 64  # convert_llava_weights_to_hf.py l.161
# what of the original config.json is the language model's (it is a LlamaConfig)
LLAMA_FIELDS = tuple(
    "hidden_size intermediate_size num_hidden_layers num_attention_heads num_key_value_heads "
    "head_dim hidden_act max_position_embeddings initializer_range rms_norm_eps use_cache "
    "bos_token_id eos_token_id pretraining_tp rope_theta rope_scaling rope_parameters "
    "attention_bias attention_dropout mlp_bias".split()
)
SYSTEM_PROMPT = (  # conv_llava_llama_3.system, conversation.py l.393
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural "
    "language."
)
# conv_llava_llama_3 in MPT style: system + sep, then role header + message + sep per turn, the
# open assistant header last (conversation.py l.67-75, l.392-401); the image part as "<image>\n"
# before the text (describe_segments.py l.157). No tag is followed by a newline, so the
# trim_blocks / lstrip_blocks of transformers' template engine change nothing.
CHAT_TEMPLATE = (
    "{% set system = '" + SYSTEM_PROMPT + "' %}{% set turns = messages %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}{% set system = messages[0]['content'] %}"
    "{% else %}{% set system = messages[0]['content'] | map(attribute='text') | join('') %}"
    "{% endif %}{% set turns = messages[1:] %}{% endif %}"
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{{ system }}<|eot_id|>"
    "{% for message in turns %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def convert_llava_checkpoint(
    source: Path, target: Path, vision_tower: Path | None = None
) -> list[Path]:
    """Write ``target`` (a new folder) from the original checkpoint ``source`` and the CLIP
    folder its vision tower comes from; returns the files written. Built beside the target and
    renamed into place, so a failed conversion leaves nothing behind."""
    source, target = source.expanduser(), target.expanduser()
    if not source.is_dir():
        raise PrepError(f"{source} is not a folder: pass the original checkpoint's folder")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PrepError(f"{target} already exists and is not empty: pass a new folder")
    original = original_config(source)
    files = weight_files(source)
    clip = vision_tower_folder(original, source, vision_tower)
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        vision = clip_vision_config(clip)
        tokens = write_processor(work, source, original, vision, clip_preprocessing(clip))
        rows = -(-max(original["vocab_size"], tokens.vocabulary) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        new_ids = list(tokens.added)
        own_vision = bool(original.get("unfreeze_mm_vision_tower"))
        parts = converted_parts(files, weight_files(clip), own_vision, rows, new_ids)
        write_shards(work, parts, tied=bool(original.get("tie_word_embeddings")))
        config = llava_config(original, vision, rows, tokens)
        config.save_pretrained(work)
        write_generation_config(work, source, original, tokens.pad)
        if target.exists():
            target.rmdir()
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("converted %s into %s", source, target)
    return sorted(target.iterdir())


@dataclass(frozen=True)
class AddedTokens:
    vocabulary: int  # the tokenizer's size once they are added
    image: int
    pad: int
    added: tuple[int, ...]  # of these, the ids that are new (a tokenizer may have either)


def image_processor_settings(aspect_ratio: str | None, clip: dict[str, Any]) -> dict[str, Any]:
    """LlavaImageProcessor settings that reproduce ``process_images`` for ``aspect_ratio``."""
    settings = {k: v for k, v in clip.items() if k != "edge"}
    edge = clip["edge"]
    if aspect_ratio == "anyres":  # the squashed overview (mm_utils.py l.140-146)
        return {**settings, "size": {"height": edge, "width": edge}, "resample": BICUBIC}
    return {**settings, "size": {"shortest_edge": edge}, "do_pad": aspect_ratio == "pad"}


def write_processor(folder: Path, source: Path, original: dict, vision, clip: dict) -> AddedTokens:
    """Tokenizer (``<image>``, ``<pad>`` added), image processor and chat template."""
    from transformers import (
        AddedToken,
        AutoTokenizer,
        LlavaImageProcessor,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    # A tokenizer.json (Llama 3's) is what the original's AutoTokenizer loads too; reading it
    # directly spares AutoTokenizer the config.json it cannot parse (llava_llama).
    fast = (source / "tokenizer.json").is_file()
    try:
        tokenizer = (PreTrainedTokenizerFast if fast else AutoTokenizer).from_pretrained(
            source, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise PrepError(f"{source}: cannot load its tokenizer ({exc})".splitlines()[0]) from None
    before = len(tokenizer)
    tokenizer.add_tokens(
        [AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True
    )
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    strategy = "default" if original.get("mm_vision_select_feature", "patch") == "patch" else "full"
    image_processor = LlavaImageProcessor(
        **image_processor_settings(original.get("image_aspect_ratio"), clip)
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS
    )
    processor.save_pretrained(folder)
    settings_path = folder / "tokenizer_config.json"
    settings = read_json(settings_path)
    for key in ("is_local", "local_files_only"):  # where this process loaded it from
        settings.pop(key, None)
    # transformers 4 (which a vLLM install may bring) knows this name, 5 maps it to its own
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    settings_path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    image, pad = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), tokenizer.pad_token_id
    added = tuple(i for i in (image, pad) if i >= before)
    return AddedTokens(len(tokenizer), image, pad, added)


def grown(tensor, rows: int, new_ids: list[int]):
    """Embedding or output matrix padded to ``rows``; new tokens' rows are the mean old row."""
    import torch

    trained = min([tensor.shape[0], *new_ids])
    mean = tensor[:trained].float().mean(0).to(tensor.dtype)
    extra = max(0, rows - tensor.shape[0])
    out = torch.cat([tensor, mean.expand(extra, -1)]) if extra else tensor.clone()
    out[new_ids] = mean
    return out


def converted_parts(
    files: list[Path], clip_files: list[Path], own_vision: bool, rows: int, new_ids: list[int]
) -> Iterator[dict[str, Any]]:
    """Renamed weights, one source file at a time (an 8B checkpoint never sits in memory at
    once); the CLIP folder's vision weights last, unless the checkpoint's own are used."""
    vision_seen = False
    for path in files:
        part = {}
        for key, tensor in read_weights(path).items():
            name = renamed(key, own_vision)
            if name is None:
                continue
            vision_seen |= name.startswith("vision_tower.")
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                tensor = grown(tensor, rows, new_ids)
            part[name] = tensor
        yield part
    if vision_seen:
        return
    for path in clip_files:
        weights = read_weights(path)
        yield {tower_name(key): weights[key] for key in weights if tower_name(key)}


def write_shards(folder: Path, parts: Iterator[dict[str, Any]], tied: bool) -> None:
    """``model-0000i-of-0000n.safetensors`` plus their index, sorted, so the bytes depend only
    on the inputs."""
    from safetensors.torch import save_file

    written, weight_map, total = [], {}, 0
    for part in parts:
        if not part:
            continue
        path = folder / f"part-{len(written)}.safetensors"
        save_file({k: v.contiguous() for k, v in part.items()}, str(path), {"format": "pt"})
        written.append((path, sorted(part)))
        total += sum(v.numel() * v.element_size() for v in part.values())
    for number, (path, keys) in enumerate(written, 1):
        name = f"model-{number:05d}-of-{len(written):05d}.safetensors"
        path.rename(folder / name)
        weight_map.update(dict.fromkeys(keys, name))
    needed = [
        "language_model.model.embed_tokens.weight",
        "multi_modal_projector.linear_1.weight",
        "multi_modal_projector.linear_2.weight",
        "vision_tower.vision_model.embeddings.patch_embedding.weight",
        *([] if tied else ["language_model.lm_head.weight"]),
    ]
    missing = [name for name in needed if name not in weight_map]
    if missing:
        raise PrepError(
            f"the checkpoint lacks {', '.join(missing)} (a LoRA or projector-only checkpoint? "
            "merge it into its base first)"
        )
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    index_path = folder / "model.safetensors.index.json"
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    for name in set(weight_map.values()):  # safetensors writes 0600; readable as the umask says
        (folder / name).chmod(stat.S_IMODE(index_path.stat().st_mode))


def llava_config(original: dict[str, Any], vision, rows: int, tokens: AddedTokens):
    """LlavaConfig: the Llama fields of the original config, the CLIP tower's, and the mapping
    of the mm_* fields (see the module docstring)."""
    from transformers import LlamaConfig, LlavaConfig

    text = LlamaConfig(
        **{k: original[k] for k in LLAMA_FIELDS if original.get(k) is not None},
        vocab_size=rows,
        pad_token_id=tokens.pad,
        tie_word_embeddings=bool(original.get("tie_word_embeddings")),
    )
    strategy = "default" if original.get("mm_vision_select_feature", "patch") == "patch" else "full"
    patches = (vision.image_size // vision.patch_size) ** 2
    config = LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokens.image,
        image_seq_length=patches + (strategy == "full"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=original.get("mm_vision_select_layer", -2),
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(original.get("tie_word_embeddings")),
        dtype=original.get("torch_dtype") or original.get("dtype"),
    )
    config.architectures = ["LlavaForConditionalGeneration"]  # vLLM picks its model by this
    return config


def write_generation_config(folder: Path, source: Path, original: dict, pad_id: int) -> None:
    """The original's generation settings (its end tokens stop captions), plus the pad token."""
    from transformers import GenerationConfig

    if (source / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(source, local_files_only=True)
    else:
        generation = GenerationConfig(
            bos_token_id=original.get("bos_token_id"), eos_token_id=original.get("eos_token_id")
        )
    generation.pad_token_id = pad_id
    generation.save_pretrained(folder)
