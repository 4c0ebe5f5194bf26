"""``--captioner-compute original``: a converted LLaVA captioner computing as ShareGPT4Video's
own stack does, so that fp16 captions equal the original's token for token.

Measured on CPU against the original code (tests/stages/test_captioner_parity.py), two places
round differently in fp16 under transformers 5, each enough to change greedy captions:

- CLIP attention. ShareGPT4Video pins transformers 4.37.2, whose ``CLIPAttention`` scales the
  projected queries before q·k and takes the softmax in the tensors' own precision
  (``models/clip/modeling_clip.py`` l.261-297 there); transformers 5 scales after the product
  and hands the step to ``scaled_dot_product_attention`` (``modeling_clip.py`` l.269 and
  l.317-327 there). :func:`scaled_query_attention` is 4.37.2's order, registered under
  :data:`ORIGINAL_CLIP_ATTENTION` in transformers' attention registry for the tower only.
- The projector's first bias. For ``anyres`` the original encodes the squashed image together
  with its tiles (``llava_arch.py`` l.200-201) and keeps the CLS-less slice
  (``clip_encoder.py`` l.35-43): a strided batch, for which ``torch.nn.functional.linear`` cannot
  fuse the bias into the product and adds it after the fp16 product is rounded; transformers
  encodes one image, whose slice is flat, and gets the fused sum. :func:`bias_after_product`
  gives ``linear_1`` the original's order.

The language model needs nothing: fed the same fp16 embeddings, both give the same logits.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError

ORIGINAL_CLIP_ATTENTION = "prep_clip_4_37"  # the name in transformers' AttentionInterface
# the hand-captions options that make a captioner run as BeyondGloss's (recipes/beyondgloss.toml)
COMPUTES = ("auto", "original")
CLIP_TYPES = ("clip_vision_model", "clip")
COMPUTE_HELP = (
    "auto (transformers' kernels) or original: a converted LLaVA captioner rounds as "
    "ShareGPT4Video's stack does, so its fp16 captions equal the original's (BeyondGloss)."
)
BACKENDS = ("torchvision", "pil")
BACKEND_HELP = (
    "The captioner's image processor: torchvision (transformers' default, fast; its resize is "
    "within one grey level of PIL's) or pil (BeyondGloss's pixels exactly)."
)
TEXTS = ("collapsed", "stripped")
TEXT_HELP = (
    "Caption whitespace: collapsed (every run one space) or stripped (only the ends, as "
    "BeyondGloss keeps its captions)."
)
PRECISION_HELP = "The captioner's precision, if not --precision's (BeyondGloss: fp16)."


def scaled_query_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float,
    dropout: float = 0.0,
    **_: Any,
) -> tuple[Any, Any]:
    """transformers 4.37.2 ``CLIPAttention.forward`` l.261-315, from its projected q, k, v
    (``[batch, heads, tokens, head_dim]``): q scaled first, heads flattened into a batch for
    ``bmm`` as there, softmax without an fp32 upcast. Returns ``[batch, tokens, heads, dim]``."""
    import torch

    batch, heads, tokens, dim = query.shape
    flat = (batch * heads, -1, dim)
    query = (query * scaling).contiguous().view(flat)
    key, value = key.contiguous().view(flat), value.contiguous().view(flat)
    weights = torch.bmm(query, key.transpose(1, 2))
    if attention_mask is not None:
        weights = weights.view(batch, heads, tokens, -1) + attention_mask
        weights = weights.view(batch * heads, tokens, -1)
    weights = torch.nn.functional.softmax(weights, dim=-1)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.bmm(weights, value).view(batch, heads, tokens, dim)
    return output.transpose(1, 2).contiguous(), weights.view(batch, heads, tokens, -1)


def bias_after_product(linear: Any, hidden: Any) -> Any:
    """``x @ W.T`` rounded, then ``+ b``: what ``F.linear`` does for a strided 3-D input."""
    import torch

    output = torch.matmul(hidden, linear.weight.t())
    return output + linear.bias if linear.bias is not None else output


def register() -> str:
    """Make the attention known to transformers (idempotent); returns its registered name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ORIGINAL_CLIP_ATTENTION, scaled_query_attention)
    return ORIGINAL_CLIP_ATTENTION


def llava_parts(model: Any) -> tuple[Any, Any]:
    """The CLIP vision tower and the two-layer projector of a transformers LLaVA model."""
    inner = getattr(model, "model", model)
    tower = getattr(inner, "vision_tower", None)
    projector = getattr(inner, "multi_modal_projector", None)
    return tower, projector


def not_reproducible(reference: str, what: str) -> PrepError:
    return PrepError(
        "--captioner-compute original is for LLaVA captioners with a CLIP tower (`prep "
        f"convert-captioner` output); {reference} is {what}: pass --captioner-compute auto"
    )


def require_llava_clip(folder: Path, reference: str) -> None:
    """Before any clip is read: the captioner folder's config.json must be a LLaVA on CLIP."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise not_reproducible(reference, "without a readable config.json") from None
    kinds = (config.get("model_type"), (config.get("vision_config") or {}).get("model_type"))
    if kinds[0] != "llava" or kinds[1] not in CLIP_TYPES:
        raise not_reproducible(reference, f"a {kinds[0]!r} model")


def use_original_compute(model: Any, reference: str) -> None:
    """Switch a converted LLaVA captioner to the original's arithmetic."""
    tower, projector = llava_parts(model)
    kind = getattr(getattr(tower, "config", None), "model_type", None)
    if kind not in CLIP_TYPES or not hasattr(projector, "linear_1"):
        raise not_reproducible(reference, f"a {type(model).__name__}")
    tower.set_attn_implementation(register())
    projector.linear_1.forward = types.MethodType(bias_after_product, projector.linear_1)
