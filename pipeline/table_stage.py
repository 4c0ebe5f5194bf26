"""The base of stages whose outputs are per-split tables keyed by sample id.

The base owns the plumbing every such stage repeated: each unit's rows, side tables and
quarantine written as parquet; the merge walking committed units in plan order, grouping by
split, counting quarantine reasons and writing ``<split>.parquet``, side tables
(``<split>.<name>.parquet``), ``quarantine.parquet`` and the summary. A concrete stage
implements ``plan``, ``process`` (one unit's rows) and, when it has more to add, ``merge``.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from pipeline import manifest as m
from pipeline.layout import UNIT_QUARANTINE, Layout
from pipeline.stage import Stage, WorkUnit
from pipeline.storage import write_parquet
from pipeline.verify import SplitReport


@dataclass
class UnitTables:
    """One unit's outputs: kept rows, quarantine rows, side-table rows and extra counts."""

    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    side: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class MergedTables:
    """Every committed unit's rows, by split in training order."""

    splits: list[str]
    rows: dict[str, list[dict[str, Any]]]
    side: dict[str, dict[str, list[dict[str, Any]]]]
    quarantine: list[dict[str, Any]]

    def reasons(self, split: str) -> dict[str, int]:
        counts = Counter(q["reason"] for q in self.quarantine if q["split"] == split)
        return dict(sorted(counts.items()))


@dataclass
class MergeResult:
    """What a stage adds when merging: provenance for every table, per-split figures for the
    summary (beside samples and quarantined), and stage-wide summary keys."""

    provenance: dict[str, Any]
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def quarantine_row(stage: Stage, unit: WorkUnit, item: dict, reason: str, detail: str) -> dict:
    """A quarantine row for ``item`` of ``unit``, naming ``stage`` and the item's source."""
    return m.quarantine_row(
        item["id"],
        unit.split,
        stage.run_config.dataset,
        stage.name,
        reason,
        detail,
        item.get("source_path"),
    )


class TableStage(Stage):
    schema: ClassVar[pa.Schema]  # of ``<split>.parquet``
    side_schemas: ClassVar[
        dict[str, pa.Schema]
    ] = {}  # name -> schema of ``<split>.<name>.parquet``
    unit_rows_file: ClassVar[str] = "rows.parquet"

    @abstractmethod
    def process(self, unit: WorkUnit, context: Any) -> UnitTables:
        """One unit's rows; input problems become quarantine rows, bugs raise."""

    def merge(self, merged: MergedTables, context: Any) -> MergeResult:
        """Stage-wide work on all rows before they are written (e.g. a vocabulary)."""
        return MergeResult(self.provenance())

    def provenance(self) -> dict[str, Any]:
        meta = m.provenance(self.name, self.version, self.options_dict())
        meta["dataset"] = self.run_config.dataset
        if (recipe := self.recipe_record()) is not None:
            meta["recipe"] = recipe
        return meta

    def run(self, unit: WorkUnit, workdir: Path, context: Any) -> dict[str, int]:
        tables = self.process(unit, context)
        write_parquet(m.to_table(tables.rows, self.schema), workdir / self.unit_rows_file)
        for name, schema in self.side_schemas.items():
            write_parquet(
                m.to_table(tables.side.get(name, []), schema), workdir / f"{name}.parquet"
            )
        write_parquet(m.to_table(tables.rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        return {"ok": len(tables.rows), "quarantined": len(tables.rejected), **tables.counts}

    def collect(self, units: list[WorkUnit]) -> MergedTables:
        rows: dict[str, list] = defaultdict(list)
        side: dict[str, dict[str, list]] = {name: defaultdict(list) for name in self.side_schemas}
        quarantine: list[dict] = []
        for unit in units:
            folder = self.layout.unit_dir(self.name, unit.id)
            rows[unit.split] += m.read_table(folder / self.unit_rows_file).to_pylist()
            for name in self.side_schemas:
                side[name][unit.split] += m.read_table(folder / f"{name}.parquet").to_pylist()
            quarantine += m.read_table(folder / UNIT_QUARANTINE).to_pylist()
        splits = sorted({u.split for u in units}, key=m.split_order)
        return MergedTables(splits, rows, side, quarantine)

    def finalize(self, units: list[WorkUnit], context: Any) -> dict[str, Any]:
        merged = self.collect(units)
        result = self.merge(merged, context)
        meta = result.provenance
        splits = {}
        for split in merged.splits:
            rows = merged.rows[split]
            write_parquet(
                m.to_table(rows, self.schema, meta), self.layout.split_table(self.name, split)
            )
            for name, schema in self.side_schemas.items():
                write_parquet(
                    m.to_table(merged.side[name][split], schema, meta),
                    self.layout.side_table(self.name, split, name),
                )
            splits[split] = {
                "samples": len(rows),
                **result.figures.get(split, {}),
                "quarantined": merged.reasons(split),
            }
        write_parquet(
            m.to_table(merged.quarantine, m.QUARANTINE_SCHEMA, meta),
            self.layout.quarantine_table(self.name),
        )
        return {
            "splits": splits,
            "outputs": str(self.layout.stage_dir(self.name)),
            **result.summary,
        }

    @classmethod
    def verify(cls, layout: Layout) -> list[SplitReport]:
        """Each split table re-read against the summary: its row count, ids unique and none
        of them also quarantined."""
        summary = json.loads(layout.summary(cls.name).read_text())
        quarantine = _quarantine_by_split(layout.quarantine_table(cls.name))
        reports = []
        splits = summary.get("splits", {})
        for split in sorted(splits, key=m.split_order):
            info = splits[split]
            report = SplitReport(split, stage=cls.name)
            path = layout.split_table(cls.name, split)
            try:
                ids = m.read_table(path).column("id").to_pylist()
            except (OSError, KeyError, pa.ArrowException) as exc:
                report.problem(
                    f"{path.name}: unreadable: {type(exc).__name__}: {exc}".splitlines()[0]
                )
                reports.append(report)
                continue
            report.samples = len(ids)
            rejected = quarantine.get(split, [])
            report.quarantined = len(rejected)
            if len(ids) != info.get("samples"):
                report.problem(
                    f"{path.name}: {len(ids)} rows, the summary says {info.get('samples')}"
                )
            repeated = [i for i, n in Counter(ids).items() if n > 1]
            if repeated:
                report.problem(f"{path.name}: {len(repeated)} ids appear twice, e.g. {repeated[0]}")
            # a duplicate_id row is a second record reusing a kept id, not the kept one
            both = sorted(set(ids) & {r["id"] for r in rejected if r["reason"] != m.DUPLICATE_ID})
            if both:
                report.problem(f"{path.name}: {both[0]} is both kept and quarantined")
            reports.append(report)
        return reports


def _quarantine_by_split(path: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    if path.is_file():
        for row in m.read_table(path).to_pylist():
            found.setdefault(row["split"], []).append(row)
    return found
