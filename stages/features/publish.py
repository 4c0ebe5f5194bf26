"""Publish the units' tars as one split's shards: final names, exactly-once check, index.

Units write ``part-NN.tar`` into their own committed folders. Publishing hard-links them
(a copy where links are impossible) into a fresh folder as
``<split>-<rank>-<NNNNNN>.tar`` (rank: the one that made the unit; N counts that rank's
shards in plan order), writes ``index.json`` there and swaps the folder into place, so
readers see either the old complete set or the new one.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from pipeline.errors import PrepError
from pipeline.layout import temporary_sibling
from pipeline.shards import INDEX_NAME, wids_index
from pipeline.storage import atomic_write_json, fsync_dir


def shard_name(split: str, rank: int, number: int) -> str:
    return f"{split}-{rank:04d}-{number:06d}.tar"


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def publish_split(
    shard_dir: Path,
    split: str,
    parts: Iterable[tuple[int, Path, dict[str, Any]]],
    expected_keys: set[str],
    quarantined_keys: set[str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Link ``(rank, tar, info)`` parts (in plan order) into ``shard_dir`` and index them.

    Fails loudly when a sample appears twice, or when a manifest sample is neither in a shard
    nor in the quarantine.
    """
    staging = temporary_sibling(shard_dir)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    numbers: dict[int, int] = defaultdict(int)
    keys: Counter[str] = Counter()
    entries = []
    for rank, tar, info in parts:
        name = shard_name(split, rank, numbers[rank])
        numbers[rank] += 1
        link_or_copy(tar, staging / name)
        keys.update(info["keys"])
        entries.append({**{k: v for k, v in info.items() if k != "keys"}, "name": name})
    check_exactly_once(split, keys, expected_keys, quarantined_keys)
    index = wids_index(split, entries, extra)
    atomic_write_json(staging / INDEX_NAME, index)
    swap_into_place(staging, shard_dir)
    return index


def check_exactly_once(split: str, keys: Counter, expected: set[str], quarantined: set[str]) -> None:
    twice = sorted(k for k, n in keys.items() if n > 1)
    if twice:
        raise PrepError(f"split {split}: {len(twice)} sample(s) written more than once, e.g. {twice[0]}")
    missing = sorted(expected - set(keys) - quarantined)
    if missing:
        raise PrepError(f"split {split}: {len(missing)} manifest sample(s) in no shard and not quarantined, e.g. {missing[0]}")
    both = sorted(set(keys) & quarantined)
    if both:
        raise PrepError(f"split {split}: sample {both[0]} is both in a shard and in the quarantine")


def swap_into_place(staging: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)
