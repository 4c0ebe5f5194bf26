"""The runner: plans work units, gives each rank its share, skips finished units, commits
each unit atomically with a ``_done.json`` marker, and merges once every unit is done.

Stages never spawn processes, pick devices or decide what to skip: that happens here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
import time
import traceback
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from tqdm import tqdm

from pipeline import __version__
from pipeline.config import RunConfig
from pipeline.errors import PrepError
from pipeline.layout import DONE_MARKER, UNIT_STATS, Layout, temporary_sibling
from pipeline.storage import atomic_write_json, canonical_json, commit_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkUnit:
    """A fixed slice of one split: small JSON-able items (ids, paths), never decoded data."""

    split: str
    index: int
    items: tuple[dict[str, Any], ...]

    @property
    def id(self) -> str:
        return f"{self.split}/{self.index:05d}"

    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(list(self.items)).encode()).hexdigest()


def slice_units(split: str, rows: list[dict[str, Any]], size: int) -> list[WorkUnit]:
    """A split's rows cut into units of ``size`` (the last one shorter), numbered from 0."""
    return [WorkUnit(split, i, tuple(rows[b : b + size])) for i, b in enumerate(range(0, len(rows), size))]


@dataclass
class UnitResult:
    unit_id: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None


class Stage(ABC):
    """A stage is options + ``plan`` + ``run`` + ``finalize`` and a version bumped on meaning changes."""

    name: ClassVar[str]
    version: ClassVar[int]
    requires: ClassVar[tuple[str, ...]] = ()  # stages whose outputs this one reads
    runtime_options: ClassVar[tuple[str, ...]] = ()  # options that never change outputs (not hashed)

    def __init__(self, options: Any, run: RunConfig) -> None:
        self.options = options
        self.run_config = run
        self.layout = Layout(run.out)

    def options_dict(self) -> dict[str, Any]:
        return asdict(self.options)

    def is_complete(self) -> bool:
        """Whether this stage's merged outputs exist (used to run prerequisites first)."""
        return self.layout.summary(self.name).is_file()

    @abstractmethod
    def plan(self) -> list[WorkUnit]:
        """The deterministic partition of the work; the same inputs give the same units."""

    @abstractmethod
    def run(self, unit: WorkUnit, workdir: Path) -> dict[str, int]:
        """Process one unit, writing its outputs into ``workdir``; returns counts for the stats."""

    @abstractmethod
    def finalize(self, units: list[WorkUnit]) -> dict[str, Any]:
        """Merge all committed units into the stage's outputs; returns the summary."""


def config_hash(stage: Stage) -> str:
    options = {k: v for k, v in stage.options_dict().items() if k not in stage.runtime_options}
    identity = {"stage": stage.name, "version": stage.version, "options": options}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def marker_for(stage: Stage, unit: WorkUnit, chash: str) -> dict[str, Any]:
    return {
        "stage": stage.name,
        "stage_version": stage.version,
        "prep_version": __version__,
        "config_hash": chash,
        "input_fingerprint": unit.fingerprint(),
        "unit": unit.id,
    }


def unit_state(stage: Stage, unit: WorkUnit, chash: str) -> str:
    """``done``, ``pending`` or ``stale`` (made with other settings or inputs)."""
    path = stage.layout.unit_marker(stage.name, unit.id)
    if not path.is_file():
        return "pending"
    found = json.loads(path.read_text())
    expected = marker_for(stage, unit, chash)
    keys = ("stage_version", "config_hash", "input_fingerprint")
    return "done" if all(found.get(k) == expected[k] for k in keys) else "stale"


def execute_unit(stage: Stage, unit: WorkUnit, chash: str) -> UnitResult:
    """Run one unit into a temporary folder, commit it, then write its marker (last)."""
    final = stage.layout.unit_dir(stage.name, unit.id)
    tmp = temporary_sibling(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    counts = stage.run(unit, tmp)
    seconds = time.perf_counter() - started
    atomic_write_json(tmp / UNIT_STATS, {"unit": unit.id, "counts": counts, "seconds": round(seconds, 3)})
    commit_dir(tmp, final)
    atomic_write_json(final / DONE_MARKER, marker_for(stage, unit, chash))
    stage.layout.unit_error(stage.name, unit.id).unlink(missing_ok=True)
    return UnitResult(unit.id, counts, seconds)


def execute_with_retries(stage: Stage, unit: WorkUnit, chash: str, retries: int) -> UnitResult:
    for attempt in range(retries + 1):
        try:
            return execute_unit(stage, unit, chash)
        except PrepError:
            raise
        except Exception as exc:  # a unit failure is data: logged, retried, then reported
            log.warning("unit %s failed (attempt %d): %s", unit.id, attempt + 1, exc)
            log.debug("%s", traceback.format_exc())
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    atomic_write_json(stage.layout.unit_error(stage.name, unit.id),
                      {"unit": unit.id, "error": error, "attempts": retries + 1, "at": time.time()})  # fmt: skip
    return UnitResult(unit.id, error=error)


def run_stage(stage: Stage) -> dict[str, Any] | None:
    """Run this rank's share of a stage; merge and return the summary when every unit is done."""
    run = stage.run_config
    units = stage.plan()
    if not units:
        raise PrepError(f"stage {stage.name}: nothing to do (no samples found under {run.root})")
    chash = config_hash(stage)
    atomic_write_json(stage.layout.run_record(stage.name, chash), run_record(stage, chash))
    atomic_write_json(stage.layout.plan_record(stage.name), plan_record(units, chash))
    mine = [u for position, u in enumerate(units) if position % run.world_size == run.rank]
    pending = select_pending(stage, mine, chash)
    log.info(
        "stage %s: %d units (%d for rank %d/%d), %d to do",
        stage.name, len(units), len(mine), run.rank, run.world_size, len(pending),
    )
    failures = [r for r in run_units(stage, pending, chash) if r.error]
    if failures:
        first = failures[0]
        raise PrepError(
            f"stage {stage.name}: {len(failures)} unit(s) failed, first {first.unit_id}: {first.error}"
        )
    waiting = [u.id for u in units if unit_state(stage, u, chash) != "done"]
    if waiting:
        log.info("stage %s: %d units of other ranks still running; the last rank merges", stage.name, len(waiting))
        return None
    summary = stage.finalize(units)
    summary.update({"stage": stage.name, "stage_version": stage.version, "config_hash": chash})
    atomic_write_json(stage.layout.summary(stage.name), summary)
    return summary


def select_pending(stage: Stage, units: list[WorkUnit], chash: str) -> list[WorkUnit]:
    if stage.run_config.overwrite:
        return units
    states = {u.id: unit_state(stage, u, chash) for u in units}
    stale = [uid for uid, state in states.items() if state == "stale"]
    if stale:
        raise PrepError(
            f"stage {stage.name}: {len(stale)} finished unit(s) (e.g. {stale[0]}) were made with other "
            "options or inputs; pass --overwrite to redo them"
        )
    return [u for u in units if states[u.id] == "pending"]


def run_units(stage: Stage, units: list[WorkUnit], chash: str) -> Iterable[UnitResult]:
    run = stage.run_config
    samples = sum(len(u.items) for u in units)
    bar = tqdm(total=samples, unit="clip", desc=stage.name, disable=run.quiet or not units, dynamic_ncols=True)
    frames, started = 0, time.perf_counter()

    def report(unit: WorkUnit, result: UnitResult) -> None:
        nonlocal frames
        frames += result.counts.get("frames", 0)
        bar.update(len(unit.items))
        bar.set_postfix(frames_s=f"{frames / max(time.perf_counter() - started, 1e-9):.0f}")
        if run.quiet:
            status = f"failed: {result.error}" if result.error else f"{result.counts}"
            log.info("%s %s: %s (%.1f s)", stage.name, unit.id, status, result.seconds)

    results = []
    try:
        for unit, result in map_units(stage, units, chash):
            report(unit, result)
            results.append(result)
    finally:
        bar.close()
    return results


def map_units(stage: Stage, units: list[WorkUnit], chash: str):
    """In-process for one worker; a spawn-based process pool for several."""
    workers = min(stage.run_config.workers, len(units))
    retries = stage.run_config.retries
    if workers <= 1:
        for unit in units:
            yield unit, execute_with_retries(stage, unit, chash, retries)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet_worker) as pool:
        futures = {pool.submit(execute_with_retries, stage, u, chash, retries): u for u in units}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _quiet_worker() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def plan_record(units: list[WorkUnit], chash: str) -> dict[str, Any]:
    """What ``prep status`` compares progress against: units and samples per split."""
    splits: dict[str, dict[str, int]] = {}
    for unit in units:
        entry = splits.setdefault(unit.split, {"units": 0, "samples": 0})
        entry["units"] += 1
        entry["samples"] += len(unit.items)
    return {"config_hash": chash, "splits": splits}


def run_record(stage: Stage, chash: str) -> dict[str, Any]:
    run = stage.run_config
    return {
        "stage": stage.name,
        "stage_version": stage.version,
        "prep_version": __version__,
        "config_hash": chash,
        "options": stage.options_dict(),
        "dataset": run.dataset,
        "root": str(run.root),
        "world_size": run.world_size,
    }


def committed_units(stage: Stage, units: list[WorkUnit]) -> Iterable[tuple[WorkUnit, Path]]:
    """Each unit with its committed folder, in plan order (the merge order)."""
    for unit in units:
        yield unit, stage.layout.unit_dir(stage.name, unit.id)


