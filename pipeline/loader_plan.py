"""Which samples each rank and loader worker gets, as a pure function of the index and
(seed, epoch, world size, position): that is what makes the loader's ``state_dict()`` a few
numbers and mid-epoch resumption exact, on the same or another number of ranks.

The approach is MosaicML Streaming's (``streaming/base/dataset.py`` ``state_dict`` /
``load_state_dict``, ``streaming/base/shuffle/py1b.py``): the epoch's global sample order comes
from the index alone (shards shuffled, then samples within fixed blocks, so reading stays mostly
sequential), a global step hands ``world_size`` consecutive runs of ``batch_size`` positions to
the ranks, and a state names how much of that order is behind. Restored on another world size,
the rest of the order is dealt out again, so every sample not yet seen is seen exactly once.

Training pads each pass to equal batches per rank by repeating samples from the start of the
epoch's order (already seen, unless the pass began there); evaluation never pads, so its last
step may give some ranks a short batch or none.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

STATE_VERSION = 1


@dataclass(frozen=True)
class SampleIndex:
    """Every sample of a split, from its index: shard number and place in the shard by global id."""

    shard: np.ndarray  # int32 [N]
    position: np.ndarray  # int32 [N]
    keys: tuple[str, ...]
    starts: np.ndarray  # first global id of each shard

    @classmethod
    def from_entries(cls, entries: Sequence[dict[str, Any]]) -> "SampleIndex":
        counts = [int(e["nsamples"]) for e in entries]
        shard = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        position = (np.arange(len(shard), dtype=np.int64) - starts[shard]).astype(np.int32)
        keys: list[str] = []
        for number, entry in enumerate(entries):
            listed = entry.get("keys")  # older indexes: the shard and place stand in for the key
            keys += listed if listed else [f"{entry['url']}#{i}" for i in range(counts[number])]
        return cls(shard, position, tuple(keys), starts)

    def __len__(self) -> int:
        return len(self.shard)


def epoch_order(
    samples: SampleIndex, *, seed: int, epoch: int, train: bool, block: int
) -> np.ndarray:
    """The epoch's global order of sample ids. Training: shards in a shuffled order, then the
    samples shuffled within consecutive blocks of ``block`` (MosaicML's py1b); evaluation: index
    order."""
    if not train:
        return np.arange(len(samples), dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    shards = rng.permutation(len(samples.starts) - 1)
    order = np.concatenate(
        [np.arange(samples.starts[s], samples.starts[s + 1]) for s in shards] or [np.zeros(0)]
    ).astype(np.int64)
    if block > 1:
        for begin in range(0, len(order), block):
            rng.shuffle(order[begin : begin + block])
    return order


def bucketed(
    order: np.ndarray, sizes: np.ndarray, *, window: int, batch_size: int, rng_seed: list[int]
) -> np.ndarray:
    """``order`` with each fixed window (a multiple of ``batch_size``) sorted by size, cut into
    batches and the batches shuffled: similar lengths share a batch, and the result is still a
    function of the position alone."""
    window = max(batch_size, window // batch_size * batch_size)
    rng = np.random.default_rng(rng_seed)
    out = []
    for begin in range(0, len(order), window):
        chunk = order[begin : begin + window]
        chunk = chunk[np.argsort(sizes[chunk], kind="stable")]
        batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        full = [b for b in batches if len(b) == batch_size]
        rest = [b for b in batches if len(b) < batch_size]  # a short batch stays last
        out += [full[i] for i in rng.permutation(len(full))] + rest
    return np.concatenate(out) if out else order


@dataclass(frozen=True)
class Pass:
    """One rank's batches from a place in the epoch: ``start`` samples of the order lie behind,
    dealt over ``world_size`` ranks from there."""

    order: np.ndarray
    start: int
    world_size: int
    batch_size: int
    train: bool

    def dealt(self) -> np.ndarray:
        rest = self.order[self.start :]
        if not self.train:
            return rest
        step = self.world_size * self.batch_size
        total = step * math.ceil(len(rest) / step)
        return np.concatenate([rest, np.resize(self.order, total - len(rest))])

    def batches(self, rank: int) -> list[np.ndarray]:
        """Rank ``rank``'s batches: its run of ``batch_size`` positions in every global step."""
        dealt = self.dealt()
        step = self.world_size * self.batch_size
        found = []
        for begin in range(rank * self.batch_size, len(dealt), step):
            batch = dealt[begin : begin + self.batch_size]
            if len(batch):
                found.append(batch)
        return found

    def steps(self) -> int:
        """Global steps in this pass (a training rank's batch count)."""
        return math.ceil((len(self.order) - self.start) / (self.world_size * self.batch_size))


def resumed_start(state: dict[str, Any], samples: int) -> int:
    """Samples of the epoch's order behind a saved state, whatever world size saved it."""
    behind = int(state["start"]) + int(state["steps"]) * int(state["world_size"]) * int(
        state["batch_size"]
    )
    return min(behind, samples)


def check_state(state: dict[str, Any], *, samples: int, seed: int, train: bool) -> None:
    """A state from another split, seed or mode would resume a different stream: say so."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"not a prep loader state (version {STATE_VERSION}): {state!r:.80}")
    theirs = (state.get("samples"), state.get("seed"), state.get("train"))
    if theirs != (samples, seed, train):
        raise ValueError(
            f"loader state is for samples={theirs[0]}, seed={theirs[1]}, train={theirs[2]}; this "
            f"loader has samples={samples}, seed={seed}, train={train}"
        )


def sample_rng(seed: int, epoch: int, key: str, train: bool) -> random.Random:
    """The frame-sampling draw of one clip: a function of (seed, epoch, key) in training, so a
    resumed or re-dealt stream draws the same frames; (seed, key) in evaluation, so every
    evaluation keeps the same subset."""
    if train:
        return random.Random(f"{seed}:{epoch}:{key}")
    return random.Random(seed * 1_000_003 + zlib.crc32(key.encode()))


def current_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The given rank and world size, else torch.distributed's, else RANK/WORLD_SIZE."""
    import torch.distributed as dist

    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    from pipeline.config import resolve_rank

    return resolve_rank(rank, world_size)


def worker_slot() -> tuple[int, int]:
    """This loader worker's number and how many there are (0 of 1 in the main process)."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)
