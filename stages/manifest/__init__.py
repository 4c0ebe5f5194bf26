"""Stage ``manifest``: read a corpus as distributed, probe every sample, write parquet manifests.

Outputs (see :mod:`pipeline.layout`): ``manifest/<split>.parquet`` with
:data:`pipeline.manifest.MANIFEST_SCHEMA`, ``manifest/quarantine.parquet`` and ``summary.json``.
The frame selection chosen here is recorded in the manifest and used by every later stage.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

import manifests
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.runner import Stage, WorkUnit, committed_units, slice_units
from pipeline.storage import write_parquet
from pipeline.video import FrameSelection
from stages.manifest.candidates import check_candidates
from stages.manifest.csl_daily import read_csl_daily
from stages.manifest.generic import read_generic
from stages.manifest.phoenix14t import read_phoenix14t
from stages.manifest.probe import ProbeContext, probe

READERS: dict[str, Callable[..., tuple[Path, list[dict]]]] = {
    "phoenix14t": read_phoenix14t,
    "csl-daily": read_csl_daily,
    "generic": read_generic,
}
UNIT_ROWS = "rows.parquet"
UNIT_QUARANTINE = "quarantine.parquet"


@dataclass(frozen=True)
class ManifestOptions:
    unit_size: int = 200
    deep_check: bool = False
    min_frames: int = 2
    frame_count_tolerance: int = 0
    fps: float | None = None
    frame_step: int = 1
    max_frames: int | None = None
    sampling: str = "uniform"

    def selection(self) -> FrameSelection:
        return FrameSelection(self.frame_step, self.max_frames, self.sampling)


class ManifestStage(Stage):
    name = "manifest"
    version = 2  # 2: video frames indexed by presentation time (codec, frame_timing columns)

    def __init__(self, options: ManifestOptions, run: Any) -> None:
        super().__init__(options, run)
        try:
            options.selection()
        except ValueError as exc:
            raise PrepError(str(exc)) from exc
        if options.unit_size < 1:
            raise PrepError("--unit-size must be at least 1")
        if run.dataset not in READERS:
            raise PrepError(f"unknown dataset {run.dataset!r}; choose one of {', '.join(READERS)}")
        self.descriptor = manifests.load_descriptor(run.dataset)

    def _read(self) -> tuple[Path, list[dict]]:
        root = self.run_config.root
        if not root.exists():
            raise PrepError(f"--root does not exist: {root}")
        base, candidates = READERS[self.run_config.dataset](root, self.descriptor)
        return base, check_candidates(candidates, base)

    def plan(self) -> list[WorkUnit]:
        self.base_dir, candidates = self._read()  # travels with the stage to worker processes
        by_split: dict[str, list[dict]] = defaultdict(list)
        for cand in candidates:
            by_split[cand["split"]].append(cand)
        units = []
        for split in sorted(by_split, key=m.split_order):
            units += slice_units(split, by_split[split], self.options.unit_size)
        return units

    def run(self, unit: WorkUnit, workdir: Path) -> dict[str, int]:
        ctx = ProbeContext(
            base=self.base_dir,
            dataset=self.run_config.dataset,
            language=self.descriptor.language,
            fps=self.descriptor.fps,
            fps_override=self.options.fps,
            deep_check=self.options.deep_check,
            min_frames=self.options.min_frames,
            frame_count_tolerance=self.options.frame_count_tolerance,
            known_defects=self.descriptor.known_defects,
        )
        rows, rejected = [], []
        for cand in unit.items:
            row, quarantined = probe(cand, ctx)
            rows.extend([row] if row else [])
            rejected.extend([quarantined] if quarantined else [])
        write_parquet(m.to_table(rows, m.MANIFEST_SCHEMA), workdir / UNIT_ROWS)
        write_parquet(m.to_table(rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        return {
            "ok": len(rows),
            "quarantined": len(rejected),
            "frames": sum(r["num_frames"] for r in rows),
        }

    def finalize(self, units: list[WorkUnit]) -> dict[str, Any]:
        meta = self.provenance()
        tables: dict[str, list[pa.Table]] = defaultdict(list)
        quarantine = []
        for unit, folder in committed_units(self, units):
            tables[unit.split].append(m.read_table(folder / UNIT_ROWS))
            quarantine.append(m.read_table(folder / UNIT_QUARANTINE))
        splits = {}
        reasons = pa.concat_tables(quarantine).to_pylist()
        for split in sorted({u.split for u in units}, key=m.split_order):
            table = pa.concat_tables(tables[split]).replace_schema_metadata(None)
            write_parquet(
                m.to_table(table.to_pylist(), m.MANIFEST_SCHEMA, meta),
                self.layout.split_table(self.name, split),
            )
            splits[split] = self._split_summary(split, table, reasons)
        write_parquet(
            m.to_table(reasons, m.QUARANTINE_SCHEMA, meta), self.layout.quarantine_table(self.name)
        )
        return {
            "splits": splits,
            "outputs": str(self.layout.stage_dir(self.name)),
            "frame_selection": meta["frame_selection"],
        }

    def provenance(self) -> dict[str, Any]:
        meta = m.provenance(self.name, self.version, self.options_dict())
        base_from_root = os.path.relpath(
            self.base_dir, self.run_config.root
        )  # m.source_base reverses it
        meta.update(
            {
                "dataset": self.run_config.dataset,
                "frame_selection": self.options.selection().as_dict(),
                "base_from_root": Path(base_from_root).as_posix(),
            }
        )
        return meta

    def _split_summary(self, split: str, table: pa.Table, quarantine: list[dict]) -> dict[str, Any]:
        reasons = Counter(q["reason"] for q in quarantine if q["split"] == split)
        return {
            "samples": table.num_rows,
            "frames": int(pc.sum(table["num_frames"]).as_py() or 0),
            "quarantined": dict(sorted(reasons.items())),
            "expected": self.descriptor.expected_split_sizes.get(split),
        }
