"""Per-clip work of the loader: Sign2GPT's per-epoch frame sampling (see
:mod:`pipeline.loader`), filling what an upstream stage left out, and padding a batch."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pipeline.contract import MISSING, PER_CLIP, PER_FRAME
from pipeline.errors import ShardError


class PadCollate:
    """Makes one batch in a loader worker: per-frame ``[T, ...]`` fields zero-padded to the
    longest clip, in their stored dtype (float16) unless ``dtype`` says otherwise, with
    ``lengths``; per-clip fields zero-padded to the batch's largest shape; ``present`` (``[B]``
    per field) False where an upstream stage left the sample's column out (its rows are zeros,
    see :mod:`pipeline.columns`). :func:`as_tensors` finishes it in the training process.
    ``arrays``: the index's description of the fields."""

    def __init__(
        self,
        fields: Sequence[str],
        dtype: str | None = None,
        clip_fields: Sequence[str] = (),
        arrays: dict[str, dict] | None = None,
    ) -> None:
        self.fields, self.dtype = tuple(fields), dtype
        self.clip_fields, self.arrays = tuple(clip_fields), arrays or {}

    def complete(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The sample with every loaded field: one its json says an upstream stage left out, as
        zeros; one absent for no stated reason (a damaged or foreign shard): one line."""
        absent = []
        for name in (*self.fields, *self.clip_fields):
            if name in sample:
                continue
            meta = sample.get("json") or {}
            described = self.arrays.get(f"{name}.npy")
            if name not in meta.get(MISSING, {}) or described is None:
                raise ShardError(
                    f"{Path(sample.get('__url__', 'shard')).name}: sample {sample['__key__']!r} "
                    f"has no {name}.npy; choose fields= that every sample holds"
                )
            frames = len(meta.get("frame_indices", ())) if name in self.fields else 0
            sample[name] = np.zeros((frames, *described["shape_tail"]), described["dtype"])
            absent.append(name)
        sample["__absent__"] = tuple(absent)
        return sample

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = [len(s[self.fields[0]]) for s in samples]
        longest = max(lengths)
        batch: dict[str, Any] = {
            "__key__": [s["__key__"] for s in samples],
            "json": [s.get("json") for s in samples],
        }
        for name in self.fields:
            rows = [s[name] for s in samples]
            batch[name] = padded(rows, (longest, *rows[0].shape[1:]), self.dtype)
        for name in self.clip_fields:
            rows = [s[name] for s in samples]
            batch[name] = padded(rows, np.max([r.shape for r in rows], axis=0), self.dtype)
        if "frame_positions" in samples[0]:  # which stored frames each row holds (-1: padding)
            positions = np.full((len(samples), longest), -1, dtype=np.int64)
            for row, sample in enumerate(samples):
                positions[row, : len(sample["frame_positions"])] = sample["frame_positions"]
            batch["frame_positions"] = positions
        batch["lengths"] = np.asarray(lengths, dtype=np.int64)
        batch["present"] = {
            name: np.asarray([name not in s.get("__absent__", ()) for s in samples])
            for name in (*self.fields, *self.clip_fields)
        }
        return batch


def as_tensors(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch as the training loop gets it: the small arrays :class:`PadCollate` left as numpy
    (``lengths``, ``present``, ``frame_positions``) as tensors, and ``mask`` (True = a frame).
    They cross from a loader worker by pickle: each tensor would take a shared-memory segment
    and a file descriptor of its own, which cost a third of the batches/s (measured)."""
    batch["lengths"] = torch.from_numpy(batch["lengths"])
    batch["mask"] = torch.arange(int(batch["lengths"].max()))[None, :] < batch["lengths"][:, None]
    batch["present"] = {name: torch.from_numpy(p) for name, p in batch["present"].items()}
    if "frame_positions" in batch:
        batch["frame_positions"] = torch.from_numpy(batch["frame_positions"])
    return batch


def padded(rows: list[np.ndarray], shape: Sequence[int], dtype: str | None) -> torch.Tensor:
    """``rows`` stacked into zeros of ``[len(rows), *shape]``, each at its own extent; float16 as
    stored unless ``dtype`` says otherwise (half the copying: cast on the GPU)."""
    out = np.zeros((len(rows), *(int(n) for n in shape)), dtype=dtype or rows[0].dtype)
    for number, row in enumerate(rows):
        out[(number, *(slice(0, n) for n in row.shape))] = row
    return torch.from_numpy(out)


def checked_arrays(index: dict[str, Any], where: str) -> dict[str, dict]:
    """The index's description of its arrays, refused in one line unless it is what prep
    writes (an index from elsewhere is untrusted: its dtypes and shapes make the zeros)."""
    arrays = index.get("arrays", {})
    for field, described in arrays.items() if isinstance(arrays, dict) else [("", None)]:
        if not _described_array(described):
            raise ShardError(f"{where}: the index's arrays entry {field!r} is not prep's")
    return arrays


def _described_array(described: Any) -> bool:
    try:
        return (
            described["per"] in (PER_CLIP, PER_FRAME)
            and np.dtype(described["dtype"]).kind in "fiub"
            and all(isinstance(n, int) and 0 <= n < 2**20 for n in described["shape_tail"])
        )
    except (KeyError, TypeError, ValueError):
        return False


def loaded_fields(
    fields: Sequence[str] | None, arrays: dict[str, dict], dtype: str | None
) -> PadCollate | None:
    """The collate for the requested fields (default: every per-frame array of the index), or
    None when the index describes no arrays (an older one: the caller looks at a sample)."""
    if fields is None:
        fields = [f.removesuffix(".npy") for f, d in arrays.items() if d["per"] == PER_FRAME]
        if not fields:
            return None
    per_clip = [f for f in fields if arrays.get(f"{f}.npy", {}).get("per") == PER_CLIP]
    per_frame = [f for f in fields if f not in per_clip]
    if not per_frame:
        raise ValueError(
            f"fields {list(fields)} are all per clip; the loader needs one per-frame field "
            f"(the shards hold {', '.join(sorted(arrays)) or 'none'})"
        )
    return PadCollate(per_frame, dtype, per_clip, arrays)


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
