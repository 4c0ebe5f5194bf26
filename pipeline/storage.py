"""Atomic commits: write to a temporary name, fsync, rename; readers never see partial files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.layout import temporary_sibling


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """An open file that appears at ``path`` only once the block ends without error: written
    under a temporary name, fsynced, renamed; on any error (a full disk, Ctrl-C) the temporary
    is removed and nothing is left under ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def canonical_json(value: Any) -> str:
    """Sorted keys, fixed separators: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1, default=str) + "\n"


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, canonical_json(value).encode("utf-8"))


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write a parquet file atomically with settings that give reproducible bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True, write_statistics=True)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb+") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(root))


def commit_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder to its final name; a stale final folder is replaced."""
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    fsync_dir(final.parent)
