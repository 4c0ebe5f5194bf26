"""Stream a split's shards into a torch ``DataLoader`` for training.

::

    from pipeline.loader import make_loader
    loader = make_loader("prepared", "train", batch_size=32, num_workers=4)
    for batch in loader:  # e.g. batch["dinov2"]: float16 [B, T, D], batch["mask"]: [B, T], batch["json"]
        ...

Training (``train=True``): shards shuffled per epoch, split over ranks and loader workers,
read repeatedly, a sample shuffle buffer, optional bucketing by length, and exactly
``batches_per_epoch`` batches on every rank (equal across ranks, so DDP never waits on a
rank that ran dry). Evaluation (``train=False``): every sample once, in shard order, split
over ranks. Shards with fewer files than ranks x workers are split by sample instead.

Frame sampling happens here, per epoch, not at preparation: ``frame_stride=2, random_shift=4``
is Sign2GPT's training input (every second frame from a random start 0-3, the end trimmed by
0-4 frames, redrawn every epoch; ryanwongsa/Sign2GPT ``dataloaders/phoenix_video_dataset.py``
l.56-65, ``configs/phoenix2014t/phoenix_stage1_configs/PHX_example_s1_dyn_config.py`` l.28-29).
Evaluation keeps the stride from frame 0 to the end, as there. ``max_frames=256`` is its
``max_seq_len``: a longer window keeps a random, sorted subset of that many frames
(``phoenix_video_dataset.py`` l.69-74, config l.30), in evaluation too; there the draw comes
from numpy's global state, here from the seed and the clip's key, so evaluation repeats.
"""

from __future__ import annotations

import logging
import math
import random
import re
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.utils.data

from pipeline import lineage
from pipeline.layout import Layout
from pipeline.shard_reader import (
    decode_sample,
    per_frame_fields,
    read_samples,
    shard_file,
    with_fields,
)
from pipeline.shards import read_index

log = logging.getLogger(__name__)


def shard_paths(out: Path | str, split: str) -> tuple[list[str], dict[str, Any]]:
    """Absolute tar paths of a split, in index order, and the index itself (each url checked to
    be a file of the shard folder: the index may come from elsewhere)."""
    folder = Layout(Path(out)).shard_dir(split)
    index = read_index(folder)
    return [str(shard_file(folder, s)) for s in index["shardlist"]], index


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


def split_stream(items: Iterable, slot: int, slots: int) -> Iterator:
    for position, item in enumerate(items):
        if position % slots == slot:
            yield item


def worker_slot() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def bucket_batches(
    samples: Iterable[dict], batch_size: int, buffer: int, length_of, rng: random.Random
) -> Iterator[list]:
    """Collect ``buffer`` samples, sort by length, cut into batches, yield them shuffled."""
    pool: list[dict] = []

    def drain() -> Iterator[list]:
        pool.sort(key=length_of)
        batches = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(batches)
        pool.clear()
        yield from batches

    for sample in samples:
        pool.append(sample)
        if len(pool) >= buffer:
            yield from drain()
    yield from drain()


class ShardStream(torch.utils.data.IterableDataset):
    """An ``IterableDataset`` of collated batches for one rank (see the module docstring)."""

    def __init__(
        self,
        urls: list[str],
        entries: list[dict[str, Any]],
        *,
        rank: int,
        world_size: int,
        num_workers: int,
        batch_size: int,
        train: bool,
        seed: int,
        shuffle_buffer: int,
        bucket_buffer: int,
        collate: PadCollate,
        frame_stride: int = 1,
        random_shift: int = 0,
        max_frames: int | None = None,
    ) -> None:
        super().__init__()
        self.urls, self.rank, self.world_size = urls, rank, world_size
        self.entries = dict(zip(urls, entries))
        self.by_shard = len(urls) >= world_size * max(num_workers, 1)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.shuffle_buffer, self.bucket_buffer, self.collate = (
            shuffle_buffer,
            bucket_buffer,
            collate,
        )
        self.frame_stride, self.random_shift = frame_stride, random_shift
        self.max_frames = max_frames
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = worker_slot()
        slot, slots = self.rank * workers + worker, self.world_size * workers
        rng = random.Random(self.seed * 1_000_003 + self.epoch * 1009 + slot)
        samples = self._samples(slot, slots, rng)
        if self.bucket_buffer > 1:
            key = self.collate.fields[0]
            batches = bucket_batches(
                samples, self.batch_size, self.bucket_buffer, lambda s: len(s[key]), rng
            )
        else:
            batches = chunks(samples, self.batch_size)
        for batch in batches:
            yield self.collate(batch)

    def _samples(self, slot: int, slots: int, rng: random.Random) -> Iterator[dict]:
        for cycle in range(1_000_000_000 if self.train else 1):
            urls = list(self.urls)
            if self.train:
                random.Random(self.seed + self.epoch * 7919 + cycle).shuffle(
                    urls
                )  # same order on every rank
            mine = split_stream(urls, slot, slots) if self.by_shard else urls
            samples = (sample for url in mine for sample in read_samples(url, self.entries[url]))
            if not self.by_shard:
                samples = split_stream(samples, slot, slots)
            samples = (with_fields(decode_sample(s), self.collate.fields) for s in samples)
            if self.frame_stride > 1 or self.random_shift > 0 or self.max_frames is not None:
                samples = (self._sampled(s, rng) for s in samples)
            if (
                self.train and self.shuffle_buffer > 1
            ):  # within a pass: no sample twice before all once
                samples = shuffled(samples, self.shuffle_buffer, rng)
            yield from samples

    def _sampled(self, sample: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        length = len(sample[self.collate.fields[0]])
        drawn = rng if self.train else None
        positions = frame_window(length, self.frame_stride, self.random_shift, drawn)
        if self.max_frames is not None:
            if not self.train:  # the same subset in every evaluation
                key = zlib.crc32(sample["__key__"].encode())
                drawn = random.Random(self.seed * 1_000_003 + key)
            positions = at_most(positions, self.max_frames, drawn)
        return select_frames(sample, self.collate.fields, positions)


def shuffled(samples: Iterable, buffer: int, rng: random.Random) -> Iterator:
    pool: list = []
    for sample in samples:
        if len(pool) < buffer:
            pool.append(sample)
            continue
        position = rng.randrange(len(pool))
        yield pool[position]
        pool[position] = sample
    rng.shuffle(pool)
    yield from pool


def chunks(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_loader(
    out: Path | str,
    split: str,
    *,
    batch_size: int = 16,
    fields: Sequence[str] | None = None,
    train: bool = True,
    num_workers: int = 2,
    shuffle_buffer: int = 500,
    bucket_buffer: int = 0,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    dtype: str | None = None,
    frame_stride: int = 1,
    random_shift: int = 0,
    max_frames: int | None = None,
    allow_stale: bool = False,
):
    """A ``DataLoader`` over ``<out>/shards/<split>``; rank and world size default to
    ``torch.distributed`` when it is initialised, else to RANK/WORLD_SIZE, else a single process.

    The returned loader has ``batches_per_epoch`` (training: equal on every rank) and
    ``set_epoch(n)`` to reshuffle. ``frame_stride``/``random_shift`` sample frames per epoch (see
    :func:`frame_window`) and ``max_frames`` caps them (see :func:`at_most`); each sample then
    carries ``frame_positions`` into the stored clip.

    Shards older than an upstream stage's latest run (stale: e.g. pseudo-glosses redone with
    other options, so their gloss ids no longer match ``vocab.json``) are refused unless
    ``allow_stale=True``; ``loader.stale`` names them either way.
    """
    if frame_stride < 1 or random_shift < 0 or (max_frames is not None and max_frames < 1):
        raise ValueError(
            "frame_stride and max_frames must be >= 1 and random_shift >= 0, got "
            f"{frame_stride}, {max_frames}, {random_shift}"
        )
    layout = Layout(Path(out))
    stale = lineage.stale_stages(layout)
    if not allow_stale:
        lineage.require_fresh(layout, what=f"make_loader({str(out)!r}, {split!r})")
    for stage, why in stale.items():
        log.warning("make_loader: %s is stale (%s); loading anyway (allow_stale=True)", stage, why)
    urls, index = shard_paths(out, split)
    entries = index["shardlist"]
    fields = per_frame_fields(urls, entries) if fields is None else fields
    if not fields:
        raise ValueError(f"the {split} shards under {out} hold no per-frame .npy field to load")
    rank, world_size = current_rank(rank, world_size)
    dataset = ShardStream(
        urls,
        entries,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        batch_size=batch_size,
        train=train,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        bucket_buffer=bucket_buffer,
        collate=PadCollate(fields, dtype),
        frame_stride=frame_stride,
        random_shift=random_shift,
        max_frames=max_frames,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=as_is,
        pin_memory=torch.cuda.is_available(),
    )
    samples = int(index["samples"])
    per_rank = math.ceil(samples / world_size)
    batches = math.ceil(per_rank / batch_size)
    if train:
        loader = EpochLimited(loader, dataset, batches)
    loader.batches_per_epoch = batches
    loader.samples = samples
    loader.stale = stale
    return loader


def as_is(batch: Any) -> Any:
    """Batches are collated in the dataset; torch's default conversion would walk every json."""
    return batch


class EpochLimited:
    """Stops an endless training stream after the same number of batches on every rank."""

    def __init__(self, loader, dataset: ShardStream, batches: int) -> None:
        self.loader, self.dataset, self.batches = loader, dataset, batches
        self._iterator = None

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self._iterator = None

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._iterator is None:
            self._iterator = iter(self.loader)
        for _ in range(self.batches):
            yield next(self._iterator)


def current_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    import torch.distributed as dist

    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    from pipeline.config import resolve_rank

    return resolve_rank(rank, world_size)
