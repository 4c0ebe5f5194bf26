"""Work units, one at a time: run into a temporary folder, commit atomically, mark done last;
retried on failure with the traceback kept; many in this process or in a spawn-based pool,
with a progress bar. :mod:`pipeline.runner` decides which units run and when they merge."""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Iterable

from tqdm import tqdm

from pipeline import __version__
from pipeline.errors import PrepError
from pipeline.layout import DONE_MARKER, TMP_PREFIX, UNIT_STATS, temporary_sibling
from pipeline.stage import Stage, WorkUnit
from pipeline.storage import atomic_write_json, commit_dir

log = logging.getLogger("pipeline.runner")


@dataclass
class UnitResult:
    unit_id: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


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


def execute_unit(stage: Stage, unit: WorkUnit, context: Any, chash: str) -> UnitResult:
    """Run one unit into a temporary folder, commit it, then write its marker (last)."""
    final = stage.layout.unit_dir(stage.name, unit.id)
    tmp = temporary_sibling(final)
    for leftover in final.parent.glob(
        f"{TMP_PREFIX}{final.name}-*"
    ):  # of a killed run of this unit
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    counts = stage.run(unit, tmp, context)
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


def execute_with_retries(
    stage: Stage, unit: WorkUnit, context: Any, chash: str, retries: int
) -> UnitResult:
    for attempt in range(retries + 1):
        try:
            return execute_unit(stage, unit, context, chash)
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


def run_units(
    stage: Stage, units: list[WorkUnit], context: Any, chash: str
) -> Iterable[UnitResult]:
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
        for unit, result in map_units(stage, units, context, chash):
            report(unit, result)
            results.append(result)
    finally:
        bar.close()
    return results


def map_units(stage: Stage, units: list[WorkUnit], context: Any, chash: str):
    """In-process for one worker; a spawn-based process pool for several."""
    workers = min(stage.run_config.workers, len(units))
    retries = stage.run_config.retries
    if workers <= 1:
        for unit in units:
            yield unit, execute_with_retries(stage, unit, context, chash, retries)
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_quiet_worker) as pool:
        futures = {
            pool.submit(execute_with_retries, stage, u, context, chash, retries): u for u in units
        }
        for future in as_completed(futures):
            yield futures[future], future.result()


def _quiet_worker() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
