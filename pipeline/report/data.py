"""What the report reads from a run folder: stage summaries, per-split tables, quarantines,
provenance, shard indexes and selected shard members. Reads only; never changes the run.

Stages are known only through :mod:`pipeline.registry`: which stages exist, which one wrote the
manifest, and how each finds its own provenance (``Stage.report_provenance``), so a stage added
by another package is reported without an edit here."""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline import manifest as m
from pipeline import registry
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.shards import INDEX_NAME

log = logging.getLogger(__name__)


@dataclass
class RunOutputs:
    """Lazy, cached access to one run's outputs under ``out``."""

    out: Path
    _tables: dict[tuple[str, str, str], list[dict]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.out.is_dir():
            raise PrepError(f"no run folder at {self.out}")
        if not any(self.ran(stage) for stage in registry.registered()):
            raise PrepError(
                f"nothing to report under {self.out}: no stage has finished (no <stage>/summary.json)"
            )

    @cached_property
    def layout(self) -> Layout:
        return Layout(self.out)

    @cached_property
    def manifest_stage(self) -> str:
        """The name of the stage whose tables are the manifest (the registry says which)."""
        return registry.manifest_stage().name

    def ran(self, stage: str) -> bool:
        return self.layout.summary(stage).is_file()

    def summary(self, stage: str) -> dict[str, Any]:
        return json.loads(self.layout.summary(stage).read_text()) if self.ran(stage) else {}

    def splits(self, stage: str | None = None) -> list[str]:
        """The splits a stage's summary names (default: the manifest's), in training order."""
        return sorted(
            self.summary(stage or self.manifest_stage).get("splits", {}), key=m.split_order
        )

    def table(self, stage: str, split: str, side: str = "") -> list[dict]:
        """Rows of ``<out>/<stage>/<split>.parquet``, or of the side table
        ``<split>.<side>.parquet`` when ``side`` is given; empty when the file is missing."""
        key = (stage, split, side)
        if key not in self._tables:
            path = (
                self.layout.side_table(stage, split, side)
                if side
                else self.layout.split_table(stage, split)
            )
            self._tables[key] = m.read_table(path).to_pylist() if path.is_file() else []
        return self._tables[key]

    def quarantine(self, stage: str) -> list[dict]:
        path = self.layout.quarantine_table(stage)
        return m.read_table(path).to_pylist() if path.is_file() else []

    def provenance(self, stage: str) -> dict[str, Any]:
        """What the stage recorded about how its outputs were made; the stage knows where it put
        it (tables' schema metadata by default, a shard index for a stage that writes shards)."""
        return registry.get(stage).report_provenance(self)

    def table_provenance(self, stage: str) -> dict[str, Any]:
        """The provenance in the schema metadata of the stage's first per-split table."""
        for split in self.splits(stage):
            path = self.layout.split_table(stage, split)
            if path.is_file():
                return m.read_provenance(path)
        return {}

    def run_records(self, stage: str) -> list[dict[str, Any]]:
        """Every ``runs/<stage>-<hash>.json``: the resolved options of each run of the stage."""
        folder = self.layout.runs_dir()
        return (
            [json.loads(p.read_text()) for p in sorted(folder.glob(f"{stage}-*.json"))]
            if folder.is_dir()
            else []
        )

    def shard_index(self, split: str) -> dict[str, Any] | None:
        path = self.layout.shard_dir(split) / INDEX_NAME
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def manifest_rows(self) -> dict[tuple[str, str], dict]:
        """Manifest rows by (split, id)."""
        return {
            (split, row["id"]): row
            for split in self.splits()
            for row in self.table(self.manifest_stage, split)
        }

    @cached_property
    def base_dir(self) -> Path | None:
        """The folder the manifest's ``source_path`` values are relative to."""
        root = m.recorded_root(self.layout)
        for split in self.splits():
            provenance = m.read_provenance(self.layout.split_table(self.manifest_stage, split))
            if root is not None or provenance.get("base_dir"):
                return m.source_base(provenance, root or Path("."))
        return None


def iter_shard_members(
    shard: Path, wanted: Callable[[str, str], bool]
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {field: bytes})`` per sample of one tar, reading only the members ``wanted(key,
    field)`` accepts; the others are skipped by seeking, so a report never reads all features."""
    current, fields = None, {}
    with tarfile.open(shard, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, name = member.name.rsplit("/", 1)[-1].partition(".")
            if key != current and current is not None:
                yield current, fields
                fields = {}
            current = key
            if wanted(key, name):
                fields[name] = tar.extractfile(member).read()
    if current is not None:
        yield current, fields


def shard_paths(outputs: RunOutputs, split: str) -> list[Path]:
    index = outputs.shard_index(split) or {}
    folder = outputs.layout.shard_dir(split)
    return [folder / s["url"] for s in index.get("shardlist", [])]


def has_field(outputs: RunOutputs, split: str, name: str) -> bool:
    index = outputs.shard_index(split) or {}
    return any(name in s.get("fields", {}) for s in index.get("shardlist", []))
