"""The manifest's part of ``prep report``: clips, frames and durations per split, the frame
rates found, what was quarantined and why, and where the corpus came from; what a researcher
checks first, since every later stage reads only what the manifest kept."""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.report import plots
from pipeline.report.data import RunOutputs
from pipeline.report.frames import FrameReader
from pipeline.report.html import Section, esc, figure, not_run, table
from pipeline.report.sections import quarantine_block

STAGE = "manifest"
PERCENTILES = (5, 50, 95)


def report_sections(outputs: RunOutputs, frames: FrameReader, clips: int) -> list[Section]:
    return [manifest_section(outputs)]


def manifest_section(outputs: RunOutputs) -> Section:
    title = "Manifest"
    if not outputs.ran(STAGE):
        return not_run("manifest", title, f"no manifest (prep run --stage {STAGE})")
    summary = outputs.summary(STAGE)
    rows, durations = [], {}
    for split in outputs.splits(STAGE):
        clips = outputs.table(STAGE, split)
        seconds = np.array([c["num_frames"] / c["fps"] for c in clips if c["fps"]], float)
        durations[split] = seconds
        quarantined = summary["splits"][split].get("quarantined", {})
        fps = Counter(c["fps"] for c in clips)
        rows.append(
            [
                split,
                len(clips),
                sum(c["num_frames"] for c in clips),
                _hours(seconds.sum()),
                *(np.percentile(seconds, p) if len(seconds) else None for p in PERCENTILES),
                seconds.max() if len(seconds) else None,
                ", ".join(f"{f:g} ({n})" for f, n in sorted(fps.items())),
                sum(quarantined.values()),
                ", ".join(f"{k} {v}" for k, v in sorted(quarantined.items())) or "none",
            ]
        )
    headers = [
        "split",
        "clips",
        "frames",
        "duration",
        *(f"p{p} s" for p in PERCENTILES),
        "max s",
        "fps (clips)",
        "quarantined",
        "reasons",
    ]
    histogram = plots.histogram(durations, "clip duration (s)", "Clip durations per split")
    body = (
        _sources(outputs.provenance(STAGE))
        + table(headers, rows, text_columns=(0, 8, 10))
        + figure(histogram, "Clip duration histogram per split", "plot-durations")
        + quarantine_block(outputs, STAGE)
    )
    return Section("manifest", title, body)


def _sources(recorded: dict) -> str:
    """The dataset and the frame selection: what decides which frames every stage sees."""
    return (
        f"<p>Dataset {esc(str(recorded.get('dataset', '–')))};"
        f" frames {esc(str(recorded.get('frame_selection', {})))}.</p>"
    )


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
