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
from pipeline.layout import OLD_PREFIX, TMP_PREFIX, temporary_sibling
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

    Fails loudly, leaving the published folder as it was, when a unit's tar is missing or
    damaged, a sample appears twice (a unit listed twice), or a manifest sample is neither in a
    shard nor in the quarantine (a unit left out).
    """
    remove_interrupted(shard_dir)
    staging = temporary_sibling(shard_dir)
    staging.mkdir(parents=True)
    try:
        numbers: dict[int, int] = defaultdict(int)
        keys: Counter[str] = Counter()
        entries = []
        for rank, tar, info in parts:
            check_part(tar, info)
            name = shard_name(split, rank, numbers[rank])
            numbers[rank] += 1
            link_or_copy(tar, staging / name)
            keys.update(info["keys"])
            entries.append({**info, "name": name})
        check_exactly_once(split, keys, expected_keys, quarantined_keys)
        index = wids_index(split, entries, extra)
        atomic_write_json(staging / INDEX_NAME, index)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the published folder stays as it was
        raise
    swap_into_place(staging, shard_dir)
    return index


def remove_interrupted(shard_dir: Path) -> None:
    """Staging and replaced folders of a publish that was killed (the merge lock makes it ours)."""
    if not shard_dir.parent.is_dir():
        return
    for prefix in (TMP_PREFIX, OLD_PREFIX):
        for leftover in shard_dir.parent.glob(f"{prefix}{shard_dir.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def check_part(tar: Path, info: dict[str, Any]) -> None:
    """A unit's tar must exist with the size its unit recorded (``prep verify`` checks hashes)."""
    if not tar.is_file():
        raise PrepError(
            f"unit tar {tar} is missing; rerun the stage with --overwrite to redo its unit"
        )
    if tar.stat().st_size != info["bytes"]:
        raise PrepError(
            f"unit tar {tar} has {tar.stat().st_size} bytes, its unit wrote {info['bytes']}; "
            "rerun the stage with --overwrite to redo its unit"
        )


def check_exactly_once(
    split: str, keys: Counter, expected: set[str], quarantined: set[str]
) -> None:
    twice = sorted(k for k, n in keys.items() if n > 1)
    if twice:
        raise PrepError(
            f"split {split}: {len(twice)} sample(s) written more than once, e.g. {twice[0]}"
        )
    missing = sorted(expected - set(keys) - quarantined)
    if missing:
        raise PrepError(
            f"split {split}: {len(missing)} manifest sample(s) in no shard and not quarantined, e.g. {missing[0]}"
        )
    both = sorted(set(keys) & quarantined)
    if both:
        raise PrepError(f"split {split}: sample {both[0]} is both in a shard and in the quarantine")


def swap_into_place(staging: Path, final: Path) -> None:
    old = final.with_name(f"{OLD_PREFIX}{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)
