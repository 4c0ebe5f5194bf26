"""The exporter contract: what ``prep export --format NAME`` calls to hand a prepared ``--out``
to a trainer's own reading code, and the read-only view of the run it gets.

An exporter is a class registered under the ``prep.exporters`` entry point (as stages are
under ``prep.stages``). It checks that the run holds what its trainer needs (one line, before
anything is written), writes one split at a time from streams (memory flat in corpus size),
then the files that cover every split (a config fragment), and says in ``EXPORT.md`` which
training command or config keys to point at them. :mod:`pipeline.export` drives it: target
folder checks, resumption split by split, the record and ``EXPORT.md``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.shard_reader import ShardError, checked_npy, read_shard, sample_meta
from pipeline.shards import INDEX_NAME, read_index, sample_key


@dataclass(frozen=True)
class ExportSettings:
    """What the user chose: the shard fields to export (None: the exporter's default) and splits."""

    fields: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None


@dataclass
class ShardSample:
    """One sample of the shards: its json and the requested fields, decoded (``.npy`` as
    arrays, others as bytes)."""

    key: str
    meta: dict[str, Any]
    fields: dict[str, Any]

    def array(self, name: str) -> np.ndarray:
        if name not in self.fields:
            raise PrepError(f"sample {self.meta.get('id', self.key)} has no {name}.npy field")
        return self.fields[name]


class ExportSource:
    """Read-only access to one prepared run: the manifest, any stage's tables, the shards."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.layout = Layout(out)
        self.manifest_stage = m.manifest_stage_name()
        m.manifest_splits(self.layout)  # a clear error when there is no manifest

    @cached_property
    def splits(self) -> list[str]:
        return m.manifest_splits(self.layout)

    @cached_property
    def dataset(self) -> str:
        return str(self.provenance(self.manifest_stage).get("dataset", "corpus"))

    def ran(self, stage: str) -> bool:
        return self.layout.summary(stage).is_file()

    def summary(self, stage: str) -> dict[str, Any]:
        return json.loads(self.layout.summary(stage).read_text()) if self.ran(stage) else {}

    def manifest_rows(self, split: str) -> list[dict[str, Any]]:
        return m.read_table(m.manifest_table(self.layout, split)).to_pylist()

    def table(self, stage: str, split: str) -> list[dict[str, Any]]:
        """``<out>/<stage>/<split>.parquet`` rows; empty when that stage made no such table."""
        path = self.layout.split_table(stage, split)
        return m.read_table(path).to_pylist() if path.is_file() else []

    def provenance(self, stage: str) -> dict[str, Any]:
        for split in m.manifest_splits(self.layout):
            path = self.layout.split_table(stage, split)
            if path.is_file():
                return m.read_provenance(path)
        return {}

    @cached_property
    def source_base(self) -> Path | None:
        """The folder the manifest's ``source_path`` values start from (None when unknown)."""
        root = m.recorded_root(self.layout)
        if root is None:
            return None
        return m.source_base(self.provenance(self.manifest_stage), root)

    def unreachable(self, splits: list[str]) -> str | None:
        """Why the samples' own files cannot be decoded again (None: every one is there), for an
        exporter that reads the corpus itself rather than the frames the shards stored."""
        base = self.source_base
        if base is None:
            return "the corpus folder is unknown"
        for split in splits:
            for row in self.manifest_rows(split):
                if not (base / row["source_path"]).exists():
                    return f"{base / row['source_path']} is not reachable"
        return None

    def shard_index(self, split: str) -> dict[str, Any] | None:
        folder = self.layout.shard_dir(split)
        return read_index(folder) if (folder / INDEX_NAME).is_file() else None

    def shard_fields(self, split: str) -> set[str]:
        """The fields the split's shards hold, without extensions' dots (``dinov2.npy``)."""
        index = self.shard_index(split) or {}
        return {name for s in index.get("shardlist", []) for name in s.get("fields", {})}

    def samples(self, split: str, fields: tuple[str, ...] = ()) -> Iterator[ShardSample]:
        """The split's samples in shard order; only ``json`` and ``fields`` (names without
        ``.npy``; a trailing ``*`` matches a prefix, e.g. ``frame_*``) are decoded.

        Shards are untrusted: each is read against its index entry, each json id must be its
        tar key and a sample of this split's manifest, and every array must be numbers, or the
        export stops with one line naming the shard (:class:`ShardError`)."""
        index = self.shard_index(split)
        if index is None:
            raise PrepError(f"no shards for split {split} under {self.out}; run --stage features")
        folder = self.layout.shard_dir(split)
        known = {sample_key(row["id"]) for row in self.manifest_rows(split)}
        for entry in index["shardlist"]:
            for key, raw in read_shard(folder, entry):
                meta = sample_meta(entry["url"], key, raw)
                if key not in known:
                    raise ShardError(
                        f"{entry['url']}: sample {key!r} is not in the {split} manifest"
                    )
                yield ShardSample(key, meta, _decoded(entry["url"], key, raw, fields))


def _decoded(
    shard: str, key: str, raw: dict[str, bytes], fields: tuple[str, ...]
) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for name, data in raw.items():
        stem = name.removesuffix(".npy")
        wanted = any(stem == f or (f.endswith("*") and stem.startswith(f[:-1])) for f in fields)
        if wanted:
            chosen[stem] = checked_npy(shard, key, name, data) if name.endswith(".npy") else data
    return chosen


class Exporter(ABC):
    """Writes the files one trainer reads, from one prepared run."""

    name: ClassVar[str]
    version: ClassVar[int]
    trainer: ClassVar[str]  # the trainer's repository, e.g. "neccam/slt"
    summary: ClassVar[str]  # one line for ``prep export --help``
    default_fields: ClassVar[tuple[str, ...]] = ()  # shard fields exported when none are given

    def __init__(self, source: ExportSource, target: Path, settings: ExportSettings) -> None:
        self.source = source
        self.target = target
        self.fields = settings.fields if settings.fields is not None else self.default_fields
        self.splits = list(settings.splits or source.splits)

    def inside_target(self, path: Path) -> Path:
        """``path``, refused unless it resolves inside ``--to``: names built from sample ids of
        shards from elsewhere never write outside the export."""
        root = self.target.resolve()
        resolved = path.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise PrepError(f"{self.name}: {path} would be written outside --to {self.target}")
        return path

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`PrepError` (one line) when the run lacks what the trainer needs;
        called before anything is written."""

    def gaps(self) -> list[str]:
        """What the trainer's paper used that this export substitutes (e.g. a caption embedding
        from another encoder), one line each: printed before anything is written, and listed
        in ``EXPORT.md``."""
        return []

    @abstractmethod
    def export_split(self, split: str) -> list[Path]:
        """Write one split's files (each atomically); returns them."""

    def finish(self) -> list[Path]:
        """Files that cover every split (config fragments), written after the last split."""
        return []

    @abstractmethod
    def instructions(self) -> str:
        """Markdown for ``EXPORT.md``: the training command or config keys to point at the files."""
