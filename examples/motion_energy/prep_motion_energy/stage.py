"""Stage ``motion-energy``: how much each clip moves, frame by frame.

A clip whose signer barely moves (a frozen stream, a title card, a camera left running before
the signer starts) trains a translation model on nothing. This stage measures, for every frame
the manifest selects, the mean absolute difference of its grey levels from the previous selected
frame, and quarantines clips whose mean falls below ``--min-motion``.

Outputs ``<out>/motion-energy/<split>.parquet`` (``id``, ``split``, ``motion_mean``, ``motion``)
and its quarantine; the features stage then packs ``motion_mean`` into every sample's json and
``motion`` as ``motion.npy`` (float32 ``[T]``, one value per selected frame).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from pipeline import manifest as m
from pipeline.stage import Export, Planned, WorkUnit, hook, option, per_frame, slice_units
from pipeline.table_stage import (
    MergedTables,
    MergeResult,
    TableStage,
    UnitTables,
    quarantine_row,
)
from pipeline.video import Clip, DecodeError, FrameSelection, sample_frames

STILL_CLIP = "still_clip"  # mean motion below --min-motion
DECODE_FAILED = "decode_failed"  # the clip's frames could not be read
CLIPS_PER_UNIT = 64  # small enough that a crashed run loses little, large enough to amortise
MANIFEST_COLUMNS = ("id", "source_path", "fps", "start", "end", "num_frames", "crop")
MAX_MOTION = 255.0  # the largest mean absolute difference of 8-bit grey levels


@dataclass(frozen=True)
class MotionOptions:
    min_motion: float = option(
        0.0,
        "Quarantine clips whose mean motion (grey levels per pixel between selected frames) "
        "is below this.",
        min=0.0,
        max=MAX_MOTION,
    )


@dataclass(frozen=True)
class MotionContext:
    """What every unit needs to read its clips, found once by ``plan``."""

    base_dir: Path  # the folder the manifest's ``source_path`` values start from
    selection: FrameSelection  # the manifest's frame selection: motion is per selected frame


def frame_motion(clips: Iterable[Clip]) -> np.ndarray:
    """Mean absolute grey-level difference of each selected frame from the previous selected one
    (the first frame: 0.0), as float32 ``[T]``. Batches are chained, so the value at a batch
    boundary compares with the last frame of the batch before, as if the clip were one array."""
    values: list[np.ndarray] = []
    previous: np.ndarray | None = None
    for clip in clips:
        for frame in clip.frames:
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
            change = 0.0 if previous is None else float(np.abs(grey - previous).mean())
            values.append(np.float32(change))
            previous = grey
    return np.asarray(values, np.float32)


class MotionEnergyStage(TableStage):
    """Per-frame motion energy of every clip; near-still clips become quarantine rows."""

    name = "motion-energy"
    version = 1
    options_class = MotionOptions
    requires = ("manifest",)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("split", pa.string()),
            ("motion_mean", pa.float64()),
            ("motion", pa.list_(pa.float32())),
        ]
    )
    exports = Export(("motion_mean",), arrays=(per_frame("motion"),))
    cost_unit = "frame"
    doctor_checks = hook("prep_motion_energy.checks:doctor_checks")
    report_sections = hook("prep_motion_energy.report:report_sections")

    def plan(self) -> Planned:
        splits = m.manifest_splits(self.layout)
        first = m.read_provenance(m.manifest_table(self.layout, splits[0]))
        units = []
        for split in splits:
            table = m.read_table(m.manifest_table(self.layout, split))
            units += slice_units(split, table.select(MANIFEST_COLUMNS).to_pylist(), CLIPS_PER_UNIT)
        context = MotionContext(
            base_dir=m.source_base(first, self.run_config.root),
            selection=FrameSelection(**first["frame_selection"]),
        )
        return Planned(units, context)

    def process(self, unit: WorkUnit, context: MotionContext) -> UnitTables:
        rows, rejected, frames = [], [], 0
        for item in unit.items:
            try:
                motion = frame_motion(sample_frames(context.base_dir, item, context.selection))
            except (DecodeError, OSError) as exc:  # the input is unreadable, not our code
                detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
                rejected.append(quarantine_row(self, unit, item, DECODE_FAILED, detail))
                continue
            frames += len(motion)
            mean = float(np.mean(motion, dtype=np.float64)) if len(motion) else 0.0
            if mean < self.options.min_motion:
                detail = (
                    f"mean motion {mean:.4f} over {len(motion)} selected frames is below "
                    f"--min-motion {self.options.min_motion:g}"
                )
                rejected.append(quarantine_row(self, unit, item, STILL_CLIP, detail))
                continue
            row = {"id": item["id"], "split": unit.split, "motion_mean": mean}
            rows.append({**row, "motion": motion.tolist()})
        return UnitTables(rows, rejected, {"frames": frames})

    def merge(self, merged: MergedTables, context: MotionContext) -> MergeResult:
        """Per split, the kept clips' frames and mean motion: the summary ``prep status`` and the
        report show, so a corpus that got stiller between two runs is seen without the tables."""
        figures = {}
        for split in merged.splits:
            means = [row["motion_mean"] for row in merged.rows[split]]
            figures[split] = {
                "frames": sum(len(row["motion"]) for row in merged.rows[split]),
                "motion_mean": round(float(np.mean(means)), 6) if means else None,
            }
        return MergeResult(self.provenance(), figures)
