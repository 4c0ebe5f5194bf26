"""The metadata ``energon prepare`` writes, so that prep's shards open in NVIDIA's
Megatron-Energon (``megatron.energon.get_train_dataset(<out>/shards, split_part="train")``)
without running it: the dataset root is ``<out>/shards``, its shards ``<split>/<name>.tar``.

What ``energon prepare`` writes, as megatron-energon 7.4.1 does it
(``megatron/energon/flavors/webdataset/prepare.py``):

- ``<shard>.tar.idx``: each sample's first header offset, then the end of the last member, as
  little-endian uint64 (``itar.py`` ``TarIndexWriter``, ``prepare.py`` l.309-365);
- ``.nv-meta/index.sqlite``: tables ``samples`` and ``sample_parts`` with their indexes
  (``indexing.py`` ``SqliteIndexWriter``), and ``index.uuid``;
- ``.nv-meta/.info.json``: ``energon_version`` and ``shard_counts`` (``prepare.py`` l.692-702);
- ``.nv-meta/split.yaml``: ``split_parts`` (prep's split names: read ``dev`` with
  ``get_val_dataset(..., split_part="dev")``), runs of numbered shards brace-collapsed as
  ``bracecollapse.collapse`` does (``train/train-{00..22}.tar``), and ``exclude`` (l.735-745);
- ``.nv-meta/dataset.yaml``: ``CrudeWebdataset``, samples as raw part bytes for a cooker
  (``tools/prepare.py`` l.449-460, dumped at l.592-593).

Run ``python -m pipeline.energon <out>`` after ``prep run``. Everything comes from the split
indexes and the tar headers; the same shards give the same
files, except ``index.uuid``, which is derived from the indexes' checksums, not random.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import struct
import tarfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import PrepError, ShardError
from pipeline.layout import Layout
from pipeline.shard_reader import checked_size, shard_file
from pipeline.shards import INDEX_NAME, read_index
from pipeline.storage import atomic_write_bytes

log = logging.getLogger(__name__)
META = ".nv-meta"
DATASET_YAML = "__module__: megatron.energon\n__class__: CrudeWebdataset\n"
ENERGON_FORMAT = "7.4.1"  # the megatron-energon release whose prepare output this matches
SCHEMA = (
    "CREATE TABLE samples (tar_file_id INTEGER NOT NULL, sample_key TEXT NOT NULL UNIQUE, "
    "sample_index INTEGER NOT NULL, byte_offset INTEGER, byte_size INTEGER)",
    "CREATE TABLE sample_parts (tar_file_id INTEGER, sample_index INTEGER, part_name TEXT, "
    "content_byte_offset INTEGER, content_byte_size INTEGER)",
)
INDEXES = (
    "CREATE INDEX idx_samples_by_tar_and_idx ON samples(tar_file_id, sample_index)",
    "CREATE INDEX idx_sample_parts_seq ON sample_parts(tar_file_id, sample_index, "
    "content_byte_offset)",
    "CREATE INDEX idx_sample_parts_full ON sample_parts(tar_file_id, sample_index, part_name, "
    "content_byte_offset, content_byte_size)",
)


def splits_of(root: Path) -> list[str]:
    """The split folders under ``root`` (``<out>/shards``) that hold an index."""
    return sorted(p.parent.name for p in root.glob(f"*/{INDEX_NAME}"))


def write_energon_meta(root: Path) -> Path:
    """Write Energon's metadata for every split under ``root``; returns ``root / .nv-meta``."""
    shards: list[tuple[str, Path, dict[str, Any]]] = []
    parts: dict[str, list[str]] = {}
    for split in splits_of(root):
        folder = root / split
        for entry in read_index(folder)["shardlist"]:
            name = f"{split}/{shard_file(folder, entry).name}"
            shards.append((name, shard_file(folder, entry), entry))
            parts.setdefault(split, []).append(name)
    if not shards:
        raise ShardError(f"{root}: no split index to describe for Energon")
    meta = root / META
    meta.mkdir(exist_ok=True)
    write_sqlite(meta / "index.sqlite", shards)
    digests = "".join(str(entry.get("sha256")) for _, _, entry in shards)
    atomic_write_bytes(meta / "index.uuid", str(uuid.uuid5(uuid.NAMESPACE_URL, digests)).encode())
    info = {
        "energon_version": ENERGON_FORMAT,
        "shard_counts": {name: int(entry["nsamples"]) for name, _, entry in shards},
    }
    atomic_write_bytes(meta / ".info.json", json.dumps(info, indent=2).encode())
    atomic_write_bytes(meta / "split.yaml", split_yaml(parts).encode())
    atomic_write_bytes(meta / "dataset.yaml", DATASET_YAML.encode())
    return meta


def split_yaml(parts: dict[str, list[str]]) -> str:
    """``yaml.dump({"split_parts": ..., "exclude": []}, sort_keys=False)``, written out."""
    lines = ["split_parts:"]
    for split, names in parts.items():
        lines += [f"  {split}:"] + [f"  - {name}" for name in collapsed(names)]
    return "\n".join(lines + ["exclude: []", ""])


NUMBERED = re.compile(r"(.*?)(\d+)(\.tar)")


def collapsed(names: list[str]) -> list[str]:
    """``a-00.tar, a-01.tar, a-02.tar`` as ``a-{00..02}.tar`` (runs of one prefix and width);
    anything else as it is."""
    out: list[str] = []
    run: list[tuple[str, str, str]] = []

    def flush() -> None:
        if len(run) > 1:
            prefix, first, suffix = run[0]
            out.append(f"{prefix}{{{first}..{run[-1][1]}}}{suffix}")
        elif run:
            out.append("".join(run[0]))
        run.clear()

    for name in names:
        match = NUMBERED.fullmatch(name)
        parts = match.groups() if match else None
        if (
            parts
            and run
            and parts[0] == run[-1][0]
            and parts[2] == run[-1][2]
            and (len(parts[1]) == len(run[-1][1]) and int(parts[1]) == int(run[-1][1]) + 1)
        ):
            run.append(parts)
            continue
        flush()
        if parts:
            run.append(parts)
        else:
            out.append(name)
    flush()
    return out


def tar_layout(path: Path, entry: dict[str, Any]) -> Iterator[tuple[str, int, list]]:
    """Each sample's key, header offset and parts ``(name, data offset, size)``, then
    ``("", end, [])`` with the end of the last member; keys checked against the index."""
    checked_size(path, entry)
    listed, count, key, start, members = entry.get("keys"), 0, None, 0, []
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            base, _, part = member.name.partition(".")
            if base != key:
                if key is not None:
                    yield key, start, members
                if listed is not None and (count >= len(listed) or listed[count] != base):
                    raise ShardError(f"{path}: sample {count} is {base!r}, not as its index lists")
                key, start, members, count = base, member.offset, [], count + 1
            members.append((part, member.offset_data, member.size))
        end = tar.offset
    if key is not None:
        yield key, start, members
    if count != entry.get("nsamples"):
        raise ShardError(f"{path}: {count} samples, its index says {entry.get('nsamples')}")
    yield "", end, []


def write_sqlite(target: Path, shards: list[tuple[str, Path, dict[str, Any]]]) -> None:
    """``index.sqlite`` and every shard's ``.tar.idx``, from one pass over the tar headers."""
    partial = target.with_name(f".{target.name}.part")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial)
    try:
        for statement in SCHEMA:
            db.execute(statement)
        for tar_id, (_name, path, entry) in enumerate(shards):
            offsets = []
            layout = list(tar_layout(path, entry))
            for index, (key, start, members) in enumerate(layout[:-1]):
                offsets.append(start)
                size = layout[index + 1][1] - start
                db.execute(
                    "INSERT INTO samples VALUES (?, ?, ?, ?, ?)", (tar_id, key, index, start, size)
                )
                db.executemany(
                    "INSERT INTO sample_parts VALUES (?, ?, ?, ?, ?)",
                    [(tar_id, index, part, offset, length) for part, offset, length in members],
                )
            offsets.append(layout[-1][1])
            idx = path.with_name(path.name + ".idx")
            atomic_write_bytes(idx, b"".join(struct.pack("<Q", o) for o in offsets))
        for statement in INDEXES:
            db.execute(statement)
        db.commit()
    except sqlite3.IntegrityError as exc:
        raise ShardError(
            f"{target}: a sample key repeats across shards ({exc}); Energon needs unique keys"
        ) from None
    finally:
        db.close()
    partial.replace(target)


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline.energon <out>``: describe ``<out>/shards`` for Energon."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path, help="the --out of prep run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        meta = write_energon_meta(Layout(args.out).shards_root())
    except PrepError as exc:
        raise SystemExit(f"error: {exc}") from None
    log.info(
        "wrote %s: open it with megatron.energon.get_train_dataset(%r)", meta, str(meta.parent)
    )


if __name__ == "__main__":
    main()
