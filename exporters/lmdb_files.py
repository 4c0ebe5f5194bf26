"""Writing small LMDB environments that trainers read as one record each (their format: a folder
holding ``data.mdb``), atomically and with reproducible bytes.

Why the bytes repeat: a fresh environment written in one write transaction holds two meta
pages (transaction id 1 in one), the B-tree pages and the values' overflow pages. py-lmdb's
``meminit`` (on by default) zeroes the unused part of every page, no ``lock.mdb`` is made
(``lock=False``: the temporary folder has one writer), and the map size recorded in the meta
pages is a function of the payload's size only. The same records therefore give the same
``data.mdb`` on the same platform; LMDB's page size is the OS page size, so a machine with
other pages (16 KiB, 64 KiB) writes other, equally valid, bytes.

Atomic: the environment is written in a hidden sibling folder, fsynced, then renamed over the
final name (:func:`pipeline.storage.commit_dir`); a reader never opens a half-written one.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from pipeline.layout import temporary_sibling
from pipeline.storage import commit_dir

MIB = 1 << 20


def map_size(payload: int) -> int:
    """Room for ``payload`` bytes of keys and values with the B-tree and overflow overhead to
    spare, in whole MiB: fixed by the payload, so the meta pages repeat."""
    return MIB * (2 + 2 * payload // MIB)


def write_lmdb(path: Path, records: Mapping[bytes, bytes]) -> Path:
    """An LMDB environment folder at ``path`` holding ``records``, written in one transaction."""
    import lmdb

    tmp = temporary_sibling(path)
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted write of this process id
    tmp.parent.mkdir(parents=True, exist_ok=True)
    size = map_size(sum(len(k) + len(v) for k, v in records.items()))
    try:
        env = lmdb.open(str(tmp), map_size=size, subdir=True, lock=False, max_dbs=0)
        try:
            with env.begin(write=True) as txn:
                for key in sorted(records):
                    txn.put(key, records[key])
            env.sync(True)
        finally:
            env.close()
        commit_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
