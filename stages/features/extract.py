"""Frames of many clips -> per-clip feature arrays, with the model fed full batches.

Frames from consecutive clips are packed into batches of exactly ``batch_size`` (a short
clip never leaves the model half idle), and each clip gets its rows back in order once all
of them are computed. Batches depend only on clip order, never on decode timing, so the
same inputs give the same numbers.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from pipeline.video import ChunkInfo
from stages.features.decoding import FrameChunk, decoded_chunks

log = logging.getLogger(__name__)


class FrameEncoder(Protocol):
    """What a per-frame adapter offers (DINOv2, hand detection, HaMeR).

    ``host_prepare`` runs in the decode threads, a clip's chunks in order; ``__call__`` maps a
    batch to ``{shard field: rows}``, one row per frame. A prepared value supports ``len``,
    slicing, and concatenation (``torch.cat``, or a ``cat`` classmethod of its type).
    """

    fields: dict[str, tuple[int, ...]]

    def load(self) -> None: ...
    def host_prepare(self, frames: np.ndarray, info: ChunkInfo) -> Any: ...
    def device_prepare(self, prepared: Any) -> Any: ...
    def __call__(self, batch: Any) -> dict[str, np.ndarray]: ...
    def provenance(self) -> dict[str, Any]: ...


class FrameBatcher:
    """Queues prepared frames of consecutive clips and runs the encoder on full batches."""

    def __init__(self, encoder: FrameEncoder, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size
        self._pending: deque[tuple[int, Any]] = deque()
        self._pending_frames = 0
        self._rows: dict[int, list[dict[str, np.ndarray]]] = defaultdict(list)
        self._dropped: set[int] = set()

    def add(self, position: int, prepared: Any) -> None:
        self._pending.append((position, self.encoder.device_prepare(prepared)))
        self._pending_frames += len(prepared)
        while self._pending_frames >= self.batch_size:
            self._run()

    def flush(self) -> None:
        while self._pending_frames:
            self._run()

    def computed(self, position: int) -> int:
        return sum(len(next(iter(rows.values()))) for rows in self._rows.get(position, ()))

    def pop(self, position: int) -> dict[str, np.ndarray]:
        parts = self._rows.pop(position, [])
        return {
            name: np.concatenate([p[name] for p in parts])
            if parts
            else np.zeros((0, *shape), np.float32)
            for name, shape in self.encoder.fields.items()
        }

    def drop(self, position: int) -> None:
        """Forget a clip that failed to decode; rows still queued for it are discarded."""
        self._dropped.add(position)
        self._rows.pop(position, None)

    def _forward(self, batch: Any) -> dict[str, np.ndarray]:
        """The encoder on ``batch``; on CUDA out-of-memory, on each half in turn (down to one
        frame) so that a big batch size never loses a run. Outputs keep their frame order."""
        import torch

        try:
            return self.encoder(batch)
        except torch.cuda.OutOfMemoryError:
            if len(batch) < 2:
                raise
        torch.cuda.empty_cache()
        half = len(batch) // 2
        log.warning(
            "CUDA out of memory on %d frames: retrying as two batches of %d and %d",
            len(batch),
            half,
            len(batch) - half,
        )
        first, second = self._forward(batch[:half]), self._forward(batch[half:])
        return {name: np.concatenate([first[name], second[name]]) for name in first}

    def _run(self) -> None:
        import torch

        parts, owners, size = [], [], 0
        while self._pending and size < self.batch_size:
            position, tensor = self._pending.popleft()
            take = min(len(tensor), self.batch_size - size)
            if take < len(tensor):
                self._pending.appendleft((position, tensor[take:]))
                tensor = tensor[:take]
            parts.append(tensor)
            owners.append((position, take))
            size += take
        self._pending_frames -= size
        concat = getattr(type(parts[0]), "cat", torch.cat)
        rows = self._forward(concat(parts) if len(parts) > 1 else parts[0])
        begin = 0
        for position, count in owners:
            if position not in self._dropped:
                self._rows[position].append(
                    {name: r[begin : begin + count] for name, r in rows.items()}
                )
            begin += count


@dataclass
class ExtractedClip:
    position: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extras: list[Any] = field(default_factory=list)
    error: str | None = None


def extract_clips(
    clips: Sequence[Any],
    open_clip: Callable,
    encoders: dict[str, FrameEncoder],
    *,
    batch_size: int,
    decode_workers: int,
    frame_hook: Callable[[np.ndarray, ChunkInfo], list] | None = None,
) -> Iterator[ExtractedClip]:
    """Each clip's arrays (``{shard field: [T, ...]}``) in clip order; failed clips carry ``error``."""
    hooks = {name: enc.host_prepare for name, enc in encoders.items()}
    if frame_hook is not None:
        hooks["frames"] = frame_hook
    batchers = {name: FrameBatcher(enc, batch_size) for name, enc in encoders.items()}
    waiting: deque[tuple[int, int, str | None]] = deque()
    extras: dict[int, list] = defaultdict(list)

    def ready(final: bool) -> Iterator[ExtractedClip]:
        while waiting:
            position, frames, error = waiting[0]
            if (
                error is None
                and not final
                and any(b.computed(position) < frames for b in batchers.values())
            ):
                return
            waiting.popleft()
            if error is not None:
                yield ExtractedClip(position, error=error)
                continue
            arrays = {
                field: rows for b in batchers.values() for field, rows in b.pop(position).items()
            }
            yield ExtractedClip(position, arrays, extras.pop(position, []))

    for item in decoded_chunks(clips, open_clip, hooks, workers=decode_workers):
        if isinstance(item, FrameChunk):
            for name, batcher in batchers.items():
                batcher.add(item.position, item.prepared[name])
            extras[item.position].extend(item.prepared.get("frames", ()))
            continue
        if item.error is not None:
            for batcher in batchers.values():
                batcher.drop(item.position)
            extras.pop(item.position, None)
        waiting.append((item.position, item.num_frames, item.error))
        yield from ready(final=False)
    for batcher in batchers.values():
        batcher.flush()
    yield from ready(final=True)
