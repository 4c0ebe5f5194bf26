"""The motion-energy stage's part of ``prep report``: per split the kept clips' motion, its
histogram and the quarantine, so a corpus of frozen streams shows before anyone trains on it.

Imported only when ``prep report`` calls the stage's hook (``pipeline.stage.hook``).
"""

from __future__ import annotations

import numpy as np

from pipeline.contract import FrameReader, RunOutputs, Section
from pipeline.report import plots
from pipeline.report.html import esc, figure, not_run, table
from pipeline.report.sections import quarantine_block

STAGE = "motion-energy"


def report_sections(outputs: RunOutputs, frames: FrameReader, clips: int) -> list[Section]:
    """One section: per split the kept clips' motion, a histogram of it, and the quarantine."""
    title = "Motion energy"
    if not outputs.ran(STAGE):
        return [not_run(STAGE, title, f"no motion measured (prep run --stage {STAGE})")]
    rows, series = [], {}
    for split in outputs.splits(STAGE):
        means = [r["motion_mean"] for r in outputs.table(STAGE, split)]
        series[split] = means
        rows.append([split, len(means), *_spread(means), _quarantined(outputs, split)])
    options = outputs.provenance(STAGE).get("options", {})
    body = (
        f"<p>Mean absolute grey-level change between selected frames; clips below "
        f"<b>{esc(str(options.get('min_motion', '–')))}</b> are quarantined as still.</p>"
        + table(["split", "clips", "mean", "min", "median", "max", "quarantined"], rows)
    )
    if any(series.values()):
        chart = plots.histogram(series, "mean motion (grey levels)", "Motion per clip")
        body += figure(chart, "Mean motion of each kept clip, by split", "plot-motion")
    return [Section(STAGE, title, body + quarantine_block(outputs, STAGE))]


def _spread(values: list[float]) -> list[float | None]:
    """Mean, min, median and max (blanks for a split with no kept clip)."""
    if not values:
        return [None] * 4
    array = np.asarray(values, np.float64)
    return [float(f(array)) for f in (np.mean, np.min, np.median, np.max)]


def _quarantined(outputs: RunOutputs, split: str) -> int:
    return sum(1 for row in outputs.quarantine(STAGE) if row["split"] == split)
