"""``prep plan``: how long each stage will take on the whole corpus, from the manifest and a short
pilot run of the real stages on a few clips on this machine.

The pilot copies a few manifest rows (spread over the train split, which the pseudo-gloss
vocabulary needs) into a temporary output folder and runs each stage there twice with the same
stage object: the first run pays the start-up (model loading, first calls), the second gives the
steady rate. An estimate is ``start-up + rate × items``, items being the frames the stage reads
(the manifest's frame selection applied) or, for per-sentence stages, the clips. Nothing is
written under ``--out`` except ``plan.json``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import manifest as m
from pipeline.config import RunConfig
from pipeline.errors import PrepError
from pipeline.layout import UNIT_STATS, Layout
from pipeline.runner import Stage, run_stage
from pipeline.storage import atomic_write_json, write_parquet
from pipeline.video import FrameSelection

log = logging.getLogger(__name__)

PILOT_SPLIT_PREFERENCE = ("train",)  # the pseudo-gloss vocabulary is built from train only

StageFactory = Callable[[str, RunConfig], Stage]


@dataclass(frozen=True)
class CorpusSize:
    clips: int
    frames: int  # frames the stages read: the manifest's frame selection applied


@dataclass(frozen=True)
class StageEstimate:
    """A stage's measured cost on this machine and what it implies for the whole corpus."""

    stage: str
    item: str  # "frame" or "clip"
    clips: int
    frames: int
    pilot: str  # what was measured, for the table
    startup_s: float
    seconds_per_item: float

    @property
    def items(self) -> int:
        return self.clips if self.item == "clip" else self.frames

    def hours(self, devices: int = 1) -> float:
        """Wall hours with the work split over ``devices`` ranks (each pays the start-up)."""
        return (self.startup_s + self.seconds_per_item * self.items / devices) / 3600

    def device_hours(self, devices: int) -> float:
        return devices * self.hours(devices)

    def for_corpus(self, size: CorpusSize) -> StageEstimate:
        return StageEstimate(**{**asdict(self), "clips": size.clips, "frames": size.frames})


def corpus_size(out: Path) -> CorpusSize:
    """Clips and selected frames of every split of the manifest under ``out``."""
    layout = Layout(out)
    clips = frames = 0
    for split in m.manifest_splits(layout):
        path = m.manifest_table(layout, split)
        selection = FrameSelection(**m.read_provenance(path).get("frame_selection", {}))
        counts = m.read_table(path).column("num_frames").to_pylist()
        clips += len(counts)
        frames += sum(len(selection.indices(n)) for n in counts)
    return CorpusSize(clips, frames)


def measured_estimate(out: Path, stage: type[Stage], size: CorpusSize) -> StageEstimate | None:
    """A stage that is not piloted (the manifest, which already ran): its committed units' own
    timings."""
    seconds = [
        json.loads(p.read_text())["seconds"]
        for p in Layout(out).units_dir(stage.name).glob(f"*/*/{UNIT_STATS}")
    ]
    if not seconds or size.clips == 0:
        return None
    items = size.clips if stage.cost_unit == "clip" else size.frames
    return StageEstimate(
        stage.name,
        stage.cost_unit,
        size.clips,
        size.frames,
        f"measured run, {len(seconds)} units",
        0.0,
        float(sum(seconds)) / max(items, 1),
    )


def pilot_rows(out: Path, clips: int) -> tuple[str, Any]:
    """``clips`` manifest rows spread evenly over the train split (or the first split)."""
    layout = Layout(out)
    splits = m.manifest_splits(layout)
    split = next((s for s in PILOT_SPLIT_PREFERENCE if s in splits), splits[0])
    table = m.read_table(m.manifest_table(layout, split))
    if table.num_rows == 0:
        raise PrepError(f"the manifest's {split} split under {out} is empty; nothing to pilot")
    picked = np.unique(
        np.linspace(0, table.num_rows - 1, min(clips, table.num_rows)).round().astype(np.int64)
    )
    return split, table.take(
        picked
    )  # keeps the schema metadata (provenance, base_from_root, selection)


def write_pilot_manifest(out: Path, pilot: Path, clips: int) -> RunConfig:
    """A manifest of a few of ``out``'s clips under ``pilot``; the run configuration to use it."""
    split, table = pilot_rows(out, clips)
    layout = Layout(pilot)
    write_parquet(table, m.manifest_table(layout, split))
    atomic_write_json(
        layout.summary(m.manifest_stage_name()),
        {"splits": {split: {"samples": table.num_rows}}, "pilot_of": str(out)},
    )
    dataset = table.column("dataset")[0].as_py()
    root = m.recorded_root(Layout(out)) or out
    return RunConfig(
        dataset=dataset, root=root, out=pilot, workers=1, overwrite=True, quiet=True, retries=0
    )


def unit_seconds(out: Path, stage: str) -> float:
    """Time the committed units of ``stage`` spent in their own work (their stats.json)."""
    return float(
        sum(
            json.loads(p.read_text())["seconds"]
            for p in Layout(out).units_dir(stage).glob(f"*/*/{UNIT_STATS}")
        )
    )


def pilot_stage(
    name: str, run: RunConfig, make_stage: StageFactory, full: CorpusSize
) -> StageEstimate:
    """Run ``name`` twice on the pilot clips with the same stage object (models stay loaded).

    The rate is the second run's unit time per item; the start-up is everything else the first
    run spent (model loading, first calls, planning, merging, e.g. fastText training).
    """
    sample = corpus_size(run.out)
    try:
        stage = make_stage(name, run)
        started = time.perf_counter()
        run_stage(stage)
        cold = time.perf_counter() - started
        run_stage(stage)
        warm_units = unit_seconds(run.out, name)
    except PrepError as exc:
        raise PrepError(f"the pilot of stage {name} failed: {exc}") from exc
    item = stage.cost_unit
    items = sample.clips if item == "clip" else sample.frames
    pilot = f"{sample.clips} clips, {sample.frames} frames"
    log.info(
        "pilot %s: %.2f s first run, %.2f s in units on the second, %s",
        name,
        cold,
        warm_units,
        pilot,
    )
    startup = max(cold - warm_units, 0.0)
    return StageEstimate(
        name, item, sample.clips, sample.frames, pilot, startup, warm_units / max(items, 1)
    ).for_corpus(full)


def plan(
    out: Path, stages: list[str], make_stage: StageFactory, pilot_clips: int = 4
) -> list[StageEstimate]:
    """An estimate per stage in ``stages``; pilots run in a temporary folder outside ``out``."""
    if pilot_clips < 1:
        raise PrepError(f"--pilot-clips must be at least 1, got {pilot_clips}")
    from pipeline import registry

    full = corpus_size(out)
    estimates = []
    for name in stages:
        stage = registry.get(name)
        if stage.piloted:
            continue
        measured = measured_estimate(out, stage, full)
        if measured is None:
            log.warning("no %s unit timings under %s; %s is left out of the plan", name, out, name)
        else:
            estimates.append(measured)
    piloted = [s for s in stages if registry.get(s).piloted]
    if piloted:
        with tempfile.TemporaryDirectory(prefix="prep-plan-") as tmp:
            run = write_pilot_manifest(out, Path(tmp), pilot_clips)
            estimates += [pilot_stage(name, run, make_stage, full) for name in piloted]
    return estimates


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), {os.cpu_count()} CPU cores"
    return f"CPU only ({platform.machine()}, {os.cpu_count()} cores)"


def plan_record(estimates: list[StageEstimate], devices: int, pilot_clips: int) -> dict[str, Any]:
    return {
        "machine": machine(),
        "devices": devices,
        "pilot_clips": pilot_clips,
        "at": time.time(),
        "stages": [
            {
                **asdict(e),
                "hours_here": e.hours(1),
                f"hours_on_{devices}": e.hours(devices),
                "device_hours": e.device_hours(devices),
            }
            for e in estimates
        ],
    }


def write_plan(out: Path, record: dict[str, Any]) -> Path:
    path = Layout(out).plan_estimate()
    atomic_write_json(path, record)
    return path


def format_plan(estimates: list[StageEstimate], devices: int) -> str:
    header = (
        "stage",
        "clips",
        "frames",
        "pilot",
        "start-up s",
        "pilot s/item",
        "hours here",
        f"hours on {devices}",
        "device-hours",
    )
    rows = [header] + [
        (
            e.stage,
            str(e.clips),
            str(e.frames),
            e.pilot,
            f"{e.startup_s:.1f}",
            f"{e.seconds_per_item:.3g} s/{e.item}",
            f"{e.hours(1):.3g}",
            f"{e.hours(devices):.3g}",
            f"{e.device_hours(devices):.3g}",
        )
        for e in estimates
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    total = sum(e.hours(devices) for e in estimates)
    lines.append(
        f"\ntotal: {sum(e.hours(1) for e in estimates):.3g} h on this machine ({machine()}); "
        f"{total:.3g} h on {devices} device(s), {sum(e.device_hours(devices) for e in estimates):.3g} device-hours"
    )
    return "\n".join(lines)
