"""Per-clip work of the loader: Sign2GPT's per-epoch frame sampling (see
:mod:`pipeline.loader`) and padding a batch of ``[T, D]`` clips."""

from __future__ import annotations

import random
import re
from typing import Any, Sequence

import numpy as np
import torch


class PadCollate:
    """Pads ``[T, D]`` fields with zeros to the longest clip of the batch, in their stored dtype
    (float16) unless ``dtype`` says otherwise; adds ``lengths`` and ``mask`` (True = a frame)."""

    def __init__(self, fields: Sequence[str], dtype: str | None = None) -> None:
        self.fields, self.dtype = tuple(fields), dtype

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = [len(s[self.fields[0]]) for s in samples]
        longest = max(lengths)
        batch: dict[str, Any] = {
            "__key__": [s["__key__"] for s in samples],
            "json": [s.get("json") for s in samples],
        }
        for name in self.fields:
            first = samples[0][name]
            dtype = (
                self.dtype or first.dtype
            )  # float16 as stored: half the copying; cast on the GPU
            padded = np.zeros((len(samples), longest, *first.shape[1:]), dtype=dtype)
            for row, sample in enumerate(samples):
                padded[row, : len(sample[name])] = sample[name]
            batch[name] = torch.from_numpy(padded)
        if "frame_positions" in samples[0]:  # which stored frames each row holds (-1: padding)
            positions = np.full((len(samples), longest), -1, dtype=np.int64)
            for row, sample in enumerate(samples):
                positions[row, : len(sample["frame_positions"])] = sample["frame_positions"]
            batch["frame_positions"] = torch.from_numpy(positions)
        batch["lengths"] = torch.tensor(lengths, dtype=torch.long)
        batch["mask"] = torch.arange(longest)[None, :] < batch["lengths"][:, None]
        return batch


STORED_FRAME = re.compile(r"frame_\d+\.jpg")  # the per-frame JPEGs of ``--with-frames``


def frame_window(length: int, stride: int, shift: int, rng: random.Random | None) -> np.ndarray:
    """Positions of the frames one pass reads: Sign2GPT's ``arange(start, end, stride)`` with
    ``start`` drawn from ``[0, shift)`` and ``end`` from ``[length - shift, length]`` in training
    (``rng`` given), ``arange(0, length, stride)`` otherwise. Clips not longer than ``2 * shift``
    keep at least one frame (Sign2GPT's draw could leave none)."""
    start, end = 0, length
    if rng is not None and shift > 0 and length > 0:
        start = rng.randrange(min(shift, length))
        end = rng.randint(max(length - shift, start + 1), length)
    return np.arange(start, end, stride)


def at_most(positions: np.ndarray, limit: int, rng: random.Random) -> np.ndarray:
    """``positions`` itself, or a random sorted subset of ``limit`` of them (Sign2GPT's
    ``np.sort(np.random.choice(selection, size=max_seq_len, replace=False))``)."""
    if len(positions) <= limit:
        return positions
    return np.sort(np.asarray(rng.sample(positions.tolist(), limit), dtype=positions.dtype))


def select_frames(sample: dict[str, Any], fields: Sequence[str], positions: np.ndarray) -> dict:
    """The sample with its per-frame arrays (and stored frame JPEGs) cut to ``positions``."""
    out = dict(sample)
    for name in fields:
        out[name] = sample[name][positions]
    stored = sorted(name for name in sample if STORED_FRAME.fullmatch(name))
    if stored:
        kept = {stored[p] for p in positions.tolist() if p < len(stored)}
        for name in stored:
            if name not in kept:
                del out[name]
    out["frame_positions"] = positions
    return out


def sampled(
    sample: dict[str, Any],
    fields: Sequence[str],
    *,
    stride: int,
    shift: int,
    max_frames: int | None,
    rng: random.Random,
    train: bool,
) -> dict[str, Any]:
    """The sample cut to this pass's frames: the stride window (start and end drawn in
    training), then at most ``max_frames`` of them; every draw comes from ``rng``."""
    positions = frame_window(len(sample[fields[0]]), stride, shift, rng if train else None)
    if max_frames is not None:
        positions = at_most(positions, max_frames, rng)
    return select_frames(sample, fields, positions)


def as_is(batch: Any) -> Any:
    """Batches are collated in the dataset; torch's default conversion would walk every json."""
    return batch
