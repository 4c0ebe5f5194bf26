"""Stream a split's shards into a torch ``DataLoader`` for training.

::

    from pipeline.loader import make_loader
    loader = make_loader("prepared", "train", batch_size=32, num_workers=4)
    for batch in loader:  # e.g. batch["dinov2"]: float16 [B, T, D], batch["mask"]: [B, T], batch["json"]
        ...
    checkpoint["loader"] = loader.state_dict()  # any time; later, in a new process:
    loader.load_state_dict(checkpoint["loader"])  # the rest of the epoch, batch for batch

``out`` may also be ``https://host/run``, ``s3://bucket/run``, ``gs://...`` (``pip install
'prep[remote]'``) or ``pipe:COMMAND`` with ``{path}`` (see :mod:`pipeline.remote`): shards are
then streamed through a local cache bounded in bytes, each checked against the index's sha256.

Training (``train=True``): the epoch's order is a pure function of (seed, epoch) over the index
(see :mod:`pipeline.loader_plan`), dealt to ranks in runs of ``batch_size`` and to loader workers
batch by batch, exactly ``batches_per_epoch`` batches on every rank (DDP never waits on a rank
that ran dry). Evaluation (``train=False``): every sample once, in index order, over the ranks.
``state_dict()``/``load_state_dict()`` follow torchdata's ``StatefulDataLoader``; a state saved
on one number of ranks resumes on another, each sample not yet seen then seen exactly once.

Frame sampling happens here, per epoch, not at preparation: ``frame_stride=2, random_shift=4``
is Sign2GPT's training input (every second frame from a random start 0-3, the end trimmed by
0-4 frames, redrawn every epoch; ryanwongsa/Sign2GPT ``dataloaders/phoenix_video_dataset.py``
l.56-65, ``configs/phoenix2014t/phoenix_stage1_configs/PHX_example_s1_dyn_config.py`` l.28-29).
Evaluation keeps the stride from frame 0 to the end, as there. ``max_frames=256`` is its
``max_seq_len``: a longer window keeps a random, sorted subset of that many frames
(``phoenix_video_dataset.py`` l.69-74, config l.30), in evaluation too; there the draw comes
from numpy's global state, here from the seed and the clip's key, so evaluation repeats. In
training every clip's draw comes from (seed, epoch, key), so a resumed stream draws the same.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.utils.data

from pipeline import lineage
from pipeline.errors import PrepError, ShardError
from pipeline.loader_frames import (  # noqa: F401  (the loader's public names, as before)
    PadCollate,
    as_is,
    as_tensors,
    at_most,
    checked_arrays,
    frame_window,
    loaded_fields,
    sampled,
    select_frames,
)
from pipeline.loader_plan import (
    STATE_VERSION,
    Pass,
    SampleIndex,
    bucketed,
    check_state,
    current_rank,
    epoch_order,
    resumed_start,
    sample_rng,
    worker_slot,
)
from pipeline.prefetch import Prefetcher
from pipeline.remote import first_fields, open_root
from pipeline.shard_reader import ShardTable, decode_sample, shard_file

log = logging.getLogger(__name__)
OPEN_SHARDS = 64  # file descriptors a loader process keeps open at most


class ShardStream(torch.utils.data.IterableDataset):
    """An ``IterableDataset`` of collated batches for one rank, from a place in an epoch:
    ``start`` samples of the epoch's order behind, dealt over ``world`` ranks, ``skip`` of this
    rank's batches already taken. Loader worker ``w`` of ``n`` makes batches ``skip + w``,
    ``skip + w + n``, ... which torch hands out round-robin: the batch order of one process."""

    def __init__(
        self,
        root,
        split: str,
        entries: list[dict[str, Any]],
        *,
        rank: int,
        world_size: int,
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
        self.root, self.split, self.entries = root, split, entries
        self.samples = SampleIndex.from_entries(entries)
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.train, self.seed = train, seed
        self.shuffle_buffer, self.bucket_buffer, self.collate = (
            shuffle_buffer,
            bucket_buffer,
            collate,
        )
        self.frame_stride, self.random_shift, self.max_frames = (
            frame_stride,
            random_shift,
            max_frames,
        )
        self.epoch, self.start, self.world, self.skip = 0, 0, world_size, 0
        self.sizes: np.ndarray | None = None
        self._tables: dict[int, ShardTable] = {}
        self._open: dict[int, int] = {}
        self._prefetch: Prefetcher | None = None
        self._reading = -1

    def plan(self) -> Pass:
        """This place's deal (a pure function of the index, seed, epoch, start and world)."""
        order = epoch_order(
            self.samples,
            seed=self.seed,
            epoch=self.epoch,
            train=self.train,
            block=self.shuffle_buffer if self.train else 1,
        )
        if self.bucket_buffer > 1:
            order = bucketed(
                order,
                self.member_sizes(),
                window=self.bucket_buffer,
                batch_size=self.batch_size,
                rng_seed=[self.seed, self.epoch, 0xB0C],
            )
        return Pass(order, self.start, self.world, self.batch_size, self.train)

    def member_sizes(self) -> np.ndarray:
        """Each sample's first padded field in bytes (rows of a fixed width: ordered as T), from
        the tar headers; bucketing sorts by it."""
        if self.sizes is None:
            field = f"{self.collate.fields[0]}.npy"
            self.sizes = np.array(
                [
                    self._table(int(s)).size_of(int(p), field)
                    for s, p in zip(self.samples.shard, self.samples.position)
                ],
                dtype=np.int64,
            )
        return self.sizes

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"], state["_prefetch"] = {}, None  # these stay with their process
        return state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = worker_slot()
        batches = self.plan().batches(self.rank)
        mine = range(self.skip + worker, len(batches), workers)
        ids = np.concatenate([batches[n] for n in mine] or [np.zeros(0, np.int64)])
        needed = list(dict.fromkeys(self.samples.shard[ids].tolist()))
        self._prefetch = Prefetcher(self.root, self.split, self.entries, needed)
        try:
            for number in mine:
                yield self.collate([self.sample(int(i)) for i in batches[number]])
        finally:
            self._prefetch.stop()
            self.close()

    def sample(self, sample_id: int) -> dict[str, Any]:
        """One decoded sample, cut to this epoch's frames."""
        shard = int(self.samples.shard[sample_id])
        if self._prefetch is not None and shard != self._reading:
            self._reading = shard
            self._prefetch.reading(shard)  # fetch or hash the next shards meanwhile
        table = self._table(shard)
        raw = table.sample(self._descriptor(shard), int(self.samples.position[sample_id]))
        sample = self.collate.complete(decode_sample(raw))
        if self.frame_stride > 1 or self.random_shift > 0 or self.max_frames is not None:
            sample = sampled(
                sample,
                self.collate.fields,
                stride=self.frame_stride,
                shift=self.random_shift,
                max_frames=self.max_frames,
                rng=sample_rng(self.seed, self.epoch, sample["__key__"], self.train),
                train=self.train,
            )
        return sample

    def _table(self, shard: int) -> ShardTable:
        if shard not in self._tables:
            self._tables[shard] = self._fetched(shard, ShardTable.scan)
        return self._tables[shard]

    def _descriptor(self, shard: int) -> int:
        if shard not in self._open:
            if len(self._open) >= OPEN_SHARDS:
                os.close(self._open.pop(next(iter(self._open))))
            self._open[shard] = self._fetched(shard, lambda path, _: os.open(path, os.O_RDONLY))
        return self._open[shard]

    def _fetched(self, shard: int, use: Any) -> Any:
        """``use(path, entry)`` on the shard (back in a remote cache first); a cached copy that
        another reader evicted to make room between the two is fetched again."""
        entry = self.entries[shard]
        for attempt in range(3):
            path = self.root.shard(self.split, entry)
            try:
                return use(path, entry)
            except (FileNotFoundError, ShardError):
                if not self.root.remote or path.exists() or attempt == 2:
                    raise

    def close(self) -> None:
        for descriptor in self._open.values():
            os.close(descriptor)
        self._open.clear()


class ResumableLoader:
    """The loader :func:`make_loader` returns: one pass over the current epoch per ``for`` loop,
    from where the state says, with torchdata's ``StatefulDataLoader`` protocol."""

    def __init__(self, dataset: ShardStream, *, num_workers: int, samples: int) -> None:
        self.dataset, self.num_workers, self.samples = dataset, num_workers, samples
        per_rank = math.ceil(samples / dataset.world_size)
        self.batches_per_epoch = math.ceil(per_rank / dataset.batch_size)
        self.stale: dict[str, str] = {}
        self._finished = False

    def set_epoch(self, epoch: int) -> None:
        """Begin epoch ``epoch`` from its start (a new order and new frame draws)."""
        self.dataset.epoch = epoch
        self._restart()

    def _restart(self) -> None:
        self.dataset.start, self.dataset.world, self.dataset.skip = 0, self.dataset.world_size, 0
        self._finished = False

    def __len__(self) -> int:
        """Batches of the pass a ``for`` loop starts now (a full epoch unless resumed)."""
        if self._finished:
            return self.batches_per_epoch
        dataset = self.dataset
        plan = dataset.plan()
        total = plan.steps() if dataset.train else len(plan.batches(dataset.rank))
        return max(0, total - dataset.skip)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._finished:  # a second loop over the same epoch starts it again
            self._restart()
        if self.dataset.bucket_buffer > 1:
            self.dataset.member_sizes()  # once here, not in every worker
        pass_ = copy.copy(self.dataset)  # the workers' copy; the state stays here
        loader = torch.utils.data.DataLoader(
            pass_,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=as_is,
            pin_memory=torch.cuda.is_available(),
        )
        try:
            for batch in loader:
                self.dataset.skip += 1
                yield as_tensors(batch)
        except PrepError as exc:  # from a worker, torch adds its traceback: keep our one line
            lines = str(exc).strip().splitlines()
            if len(lines) == 1:
                raise
            raise type(exc)(lines[-1].split(": ", 1)[-1]) from None
        self._finished = True

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is in the epoch: a few numbers (the order itself is recomputed)."""
        dataset = self.dataset
        return {
            "version": STATE_VERSION,
            "epoch": dataset.epoch,
            "start": dataset.start,
            "world_size": dataset.world,
            "batch_size": dataset.batch_size,
            "steps": dataset.skip,
            "samples": self.samples,
            "seed": dataset.seed,
            "train": dataset.train,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stopped; saved on another world size (or batch size), the
        rest of the epoch is dealt again over this one."""
        dataset = self.dataset
        check_state(state, samples=self.samples, seed=dataset.seed, train=dataset.train)
        dataset.epoch = int(state["epoch"])
        same = (state["world_size"], state["batch_size"]) == (
            dataset.world_size,
            dataset.batch_size,
        )
        if same:
            dataset.start, dataset.skip = int(state["start"]), int(state["steps"])
        else:
            dataset.start, dataset.skip = resumed_start(state, self.samples), 0
        dataset.world = dataset.world_size
        self._finished = False


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
    cache_dir: Path | str | None = None,
    cache_bytes: int = 20 * 10**9,
    checksums: bool = True,
    retries: int = 5,
) -> ResumableLoader:
    """A loader over ``<out>/shards/<split>`` (``out`` local or remote, see the module
    docstring); rank and world size default to ``torch.distributed`` when it is initialised,
    else to RANK/WORLD_SIZE, else a single process.

    The returned loader has ``batches_per_epoch`` (training: equal on every rank),
    ``set_epoch(n)`` to reshuffle, and ``state_dict()``/``load_state_dict()``.
    ``frame_stride``/``random_shift`` sample frames per epoch (see :func:`frame_window`) and
    ``max_frames`` caps them (see :func:`at_most`); each sample then carries
    ``frame_positions`` into the stored clip. ``checksums`` checks each shard's sha256 against
    the index once per process (remote shards: always, as they enter the cache of at most
    ``cache_bytes`` in ``cache_dir``; a failed transfer is tried ``retries`` more times).

    Shards older than an upstream stage's latest run (stale: e.g. pseudo-glosses redone with
    other options, so their gloss ids no longer match ``vocab.json``) are refused unless
    ``allow_stale=True``; ``loader.stale`` names them either way (a remote run: as its stages'
    summaries state them).
    """
    if frame_stride < 1 or random_shift < 0 or (max_frames is not None and max_frames < 1):
        raise ValueError(
            "frame_stride and max_frames must be >= 1 and random_shift >= 0, got "
            f"{frame_stride}, {max_frames}, {random_shift}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    root = open_root(
        out, cache_dir=cache_dir, cache_bytes=cache_bytes, retries=retries, checksums=checksums
    )
    stale = lineage.fresh_for_loading(root, split, allow_stale)
    index = root.read_index(split)
    entries = index["shardlist"]
    for entry in entries:  # names checked before any use: an index from elsewhere is untrusted
        shard_file(Path(split), entry)
    collate = loaded_fields(fields, checked_arrays(index, f"{out}/{split}"), dtype)
    if collate is None:  # an index from before it described its arrays
        collate = PadCollate(first_fields(root, split, entries), dtype)
    if not collate.fields:
        raise ValueError(f"the {split} shards under {out} hold no per-frame .npy field to load")
    rank, world_size = current_rank(rank, world_size)
    dataset = ShardStream(
        root,
        split,
        entries,
        rank=rank,
        world_size=world_size,
        batch_size=batch_size,
        train=train,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        bucket_buffer=bucket_buffer,
        collate=collate,
        frame_stride=frame_stride,
        random_shift=random_shift,
        max_frames=max_frames,
    )
    loader = ResumableLoader(dataset, num_workers=num_workers, samples=len(dataset.samples))
    loader.stale = stale
    return loader
