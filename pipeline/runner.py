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
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from tqdm import tqdm

from pipeline import __version__
from pipeline.config import RunConfig
from pipeline.distributed import RankGroup, held_lock, launched_group
from pipeline.errors import PrepError
from pipeline.layout import (
    DONE_MARKER,
    OLD_PREFIX,
    TMP_PREFIX,
    UNIT_STATS,
    Layout,
    temporary_sibling,
)
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
    return [
        WorkUnit(split, i, tuple(rows[b : b + size]))
        for i, b in enumerate(range(0, len(rows), size))
    ]


@dataclass
class UnitResult:
    unit_id: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


class Stage(ABC):
    """A stage is options + ``plan`` + ``run`` + ``finalize`` and a version bumped on meaning changes."""

    name: ClassVar[str]
    version: ClassVar[int]
    requires: ClassVar[tuple[str, ...]] = ()  # stages whose outputs this one reads
    runtime_options: ClassVar[
        tuple[str, ...]
    ] = ()  # options that never change outputs (not hashed)

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
    for leftover in final.parent.glob(
        f"{TMP_PREFIX}{final.name}-*"
    ):  # of a killed run of this unit
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    counts = stage.run(unit, tmp)
    seconds = time.perf_counter() - started
    stats = {
        "unit": unit.id,
        "counts": counts,
        "seconds": round(seconds, 3),
        "rank": stage.run_config.rank,
    }
    atomic_write_json(tmp / UNIT_STATS, stats)
    commit_dir(tmp, final)
    atomic_write_json(final / DONE_MARKER, marker_for(stage, unit, chash))
    stage.layout.unit_error(stage.name, unit.id).unlink(missing_ok=True)
    stage.layout.unit_journal(stage.name, unit.id).unlink(missing_ok=True)
    return UnitResult(unit.id, counts, seconds)


def execute_with_retries(stage: Stage, unit: WorkUnit, chash: str, retries: int) -> UnitResult:
    for attempt in range(retries + 1):
        try:
            return execute_unit(stage, unit, chash)
        except PrepError:
            raise
        except (
            Exception
        ) as exc:  # a unit failure is logged, retried, then reported with its traceback
            log.warning("unit %s failed (attempt %d): %s", unit.id, attempt + 1, exc)
            trace = traceback.format_exc()
            log.debug("%s", trace)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    record = stage.layout.unit_error(stage.name, unit.id)
    atomic_write_json(
        record,
        {
            "unit": unit.id,
            "error": error,
            "attempts": retries + 1,
            "at": time.time(),
            "traceback": trace,
        },
    )
    return UnitResult(unit.id, error=f"{error} (traceback in {record})")


def run_stage(stage: Stage) -> dict[str, Any] | None:
    """Run this rank's share of a stage; returns the summary on the rank that merged, else None.

    Ranks launched together (accelerate, torchrun) meet at a barrier, rank 0 merges and the
    others wait for it; ranks started apart (Slurm arrays, ``--rank``) never wait: the one that
    finds every unit committed merges, under a lock (:mod:`pipeline.distributed`).
    """
    lock = stage.layout.run_lock(stage.name, stage.run_config.rank)
    with held_lock(lock) as holder:
        if holder is not None:
            raise PrepError(
                f"stage {stage.name} (rank {stage.run_config.rank}) is already running on this --out: "
                f"{holder.describe()}; wait for it to end, or if no prep process is running, "
                f"delete {lock}"
            )
        return _run_stage_locked(stage)


def _run_stage_locked(stage: Stage) -> dict[str, Any] | None:
    group = launched_group(stage.run_config)
    if group is not None:
        return run_together(stage, group)
    started_ns = time.time_ns()
    units, chash = run_share(stage)
    waiting = [u.id for u in units if unit_state(stage, u, chash) != "done"]
    if waiting:
        log.info(
            "stage %s: %d units of other ranks still running; the last rank merges",
            stage.name,
            len(waiting),
        )
        return None
    return merge(
        stage, units, chash, others_may_merge=stage.run_config.world_size > 1, started_ns=started_ns
    )


def run_share(stage: Stage) -> tuple[list[WorkUnit], str]:
    """Plan, then run this rank's pending units; raises when any of them failed."""
    run = stage.run_config
    units = stage.plan()
    if not units:
        raise PrepError(f"stage {stage.name}: nothing to do: {why_no_samples(stage)}")
    chash = config_hash(stage)
    atomic_write_json(stage.layout.run_record(stage.name, chash), run_record(stage, chash))
    atomic_write_json(stage.layout.plan_record(stage.name), plan_record(units, chash))
    mine = [u for position, u in enumerate(units) if position % run.world_size == run.rank]
    pending = select_pending(stage, mine, chash)
    log.info(
        "stage %s: %d units (%d for rank %d/%d), %d to do",
        stage.name,
        len(units),
        len(mine),
        run.rank,
        run.world_size,
        len(pending),
    )
    failures = [r for r in run_units(stage, pending, chash) if r.error]
    if failures:
        first = failures[0]
        raise PrepError(
            f"stage {stage.name}: {len(failures)} unit(s) failed, first {first.unit_id}: {first.error}"
        )
    return units, chash


def why_no_samples(stage: Stage) -> str:
    """Either every sample was quarantined by a stage this one reads, or there were none."""
    for required in getattr(stage, "requires", ()):
        try:
            summary = json.loads(stage.layout.summary(required).read_text())
        except (FileNotFoundError, ValueError):
            continue
        reasons: Counter[str] = Counter()
        for info in summary.get("splits", {}).values():
            reasons.update(info.get("quarantined", {}))
        if reasons and not any(info.get("samples") for info in summary.get("splits", {}).values()):
            top = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3))
            return (
                f"all {sum(reasons.values())} samples were quarantined by {required} ({top}); "
                f"see {stage.layout.quarantine_table(required)}"
            )
    return f"no samples found under {stage.run_config.root}"


def run_together(stage: Stage, group: RankGroup) -> dict[str, Any] | None:
    """Every rank reaches both barriers, even after a failure, so none waits for a dead one."""
    units, chash, error = [], "", None
    try:
        units, chash = run_share(stage)
    except Exception as exc:  # re-raised after the barrier
        error = exc
    failed = group.count(error is not None)
    if error is not None:
        raise error
    if failed:
        raise PrepError(
            f"stage {stage.name}: {failed} other rank(s) failed; their messages say why"
        )
    summary = None
    if group.rank == 0:
        try:
            summary = merge(stage, units, chash, others_may_merge=False)
        except Exception as exc:  # re-raised after the barrier
            error = exc
    if group.count(error is not None):
        if error is not None:
            raise error
        raise PrepError(f"stage {stage.name}: rank 0 failed to merge; its message says why")
    return summary


def merge(
    stage: Stage,
    units: list[WorkUnit],
    chash: str,
    *,
    others_may_merge: bool,
    started_ns: int | None = None,
) -> dict[str, Any] | None:
    """Finalize under the stage's merge lock; None when another rank merges or just merged."""
    waiting = [u.id for u in units if unit_state(stage, u, chash) != "done"]
    if waiting:
        raise PrepError(
            f"stage {stage.name}: unit {waiting[0]} is not committed although every rank finished"
        )
    fingerprint = plan_fingerprint(units, chash)
    lock = stage.layout.merge_lock(stage.name)
    with held_lock(lock) as holder:
        if holder is not None and others_may_merge:
            log.info("stage %s: %s is merging; this rank is done", stage.name, holder.describe())
            return None
        if holder is not None:
            raise PrepError(
                f"stage {stage.name}: {lock} says {holder.describe()} is merging this stage; "
                "if no prep process is running, delete that file and run again"
            )
        if others_may_merge and merged_since(stage, fingerprint, started_ns):
            log.info(
                "stage %s: another rank merged these units meanwhile; this rank is done", stage.name
            )
            return None
        remove_temporaries(stage.layout.stage_dir(stage.name))
        summary = stage.finalize(units)
        summary.update(
            {
                "stage": stage.name,
                "stage_version": stage.version,
                "config_hash": chash,
                "plan_fingerprint": fingerprint,
            }
        )
        atomic_write_json(stage.layout.summary(stage.name), summary)
    return summary


def plan_fingerprint(units: list[WorkUnit], chash: str) -> str:
    """Names the exact set of units a summary was merged from."""
    return hashlib.sha256(
        canonical_json([chash, [[u.id, u.fingerprint()] for u in units]]).encode()
    ).hexdigest()


def merged_since(stage: Stage, fingerprint: str, started_ns: int | None) -> bool:
    """Whether a summary of these very units was written after this rank started."""
    path = stage.layout.summary(stage.name)
    try:
        written_ns = path.stat().st_mtime_ns
        return json.loads(path.read_text()).get(
            "plan_fingerprint"
        ) == fingerprint and written_ns >= (started_ns or 0)
    except (FileNotFoundError, ValueError):
        return False


def remove_temporaries(folder: Path) -> None:
    """Leftovers of a merge killed midway (only the lock holder writes here, so none is live)."""
    if not folder.is_dir():
        return
    for leftover in folder.iterdir():
        if leftover.name.startswith((TMP_PREFIX, OLD_PREFIX)):
            log.info("removing %s, left by an interrupted merge", leftover)
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)


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
    bar = tqdm(
        total=samples,
        unit="clip",
        desc=stage.name,
        disable=run.quiet or not units,
        dynamic_ncols=True,
    )
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
