"""Greedy generation through transformers, shared by the VideoLLM captioner and the refiner:
offline loading, left-padded batches, new tokens counted up to the first end token."""

from __future__ import annotations

from typing import Any

from pipeline.devices import resolve_device, torch_dtype
from pipeline.errors import PrepError
from pipeline.models import ModelLocation


def load_pretrained(
    auto_class: Any, location: ModelLocation, options: Any, what: str, precision: str | None = None
):
    """``auto_class.from_pretrained`` from the local folder on the chosen device and precision
    (``precision``, else ``--precision``)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = resolve_device(options.device)
    try:
        model = auto_class.from_pretrained(
            location.folder,
            local_files_only=True,
            dtype=torch_dtype(precision or options.precision, device),
            trust_remote_code=options.trust_remote_code,
        )
    except (ValueError, KeyError) as exc:
        raise PrepError(
            f"{what} {location.reference}: transformers cannot load it as "
            f"{auto_class.__name__} ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval()


def left_padded(tokenizer: Any) -> Any:
    """Batched generation needs the prompts right-aligned, and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def greedy_generate(
    model: Any, inputs: Any, tokenizer: Any, max_new_tokens: int, text: str = "collapsed"
) -> list[tuple[str, int]]:
    """(text, generated token count) per row of a batch, deterministic (no sampling); the text
    kept as ``text`` says (:func:`kept_text`)."""
    import torch

    inputs = inputs.to(model.device)
    for key, value in inputs.items():
        if torch.is_tensor(value) and value.is_floating_point():
            inputs[key] = value.to(model.dtype)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
    stops = end_tokens(model, tokenizer)
    results = []
    for row in new_tokens:
        length = next((i for i, token in enumerate(row) if token in stops), len(row))
        decoded = tokenizer.decode(row[:length], skip_special_tokens=True)
        results.append((kept_text(decoded, text), length))
    return results


def kept_text(decoded: str, how: str) -> str:
    """Every whitespace run collapsed to one space (prep's default), or only the ends stripped,
    as BeyondGloss keeps its captions (describe_segments.py l.117: ``batch_decode(...)[0].strip()``)."""
    return decoded.strip() if how == "stripped" else " ".join(decoded.split())


def end_tokens(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids |= {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return {i for i in ids if i is not None}
