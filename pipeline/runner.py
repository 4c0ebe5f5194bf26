"""The runner: plans work units, gives each rank its share, skips finished units, commits
each unit atomically with a ``_done.json`` marker, and merges once every unit is done.

Stages never spawn processes, pick devices or decide what to skip: that happens here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline import __version__, lineage
from pipeline.distributed import RankGroup, held_lock, launched_group
from pipeline.errors import PrepError
from pipeline.layout import OLD_PREFIX, TMP_PREFIX
from pipeline.stage import Planned, Stage, WorkUnit
from pipeline.storage import atomic_write_json, canonical_json
from pipeline.units import run_units, unit_state

log = logging.getLogger(__name__)


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
                f"delete {lock} (from another host it is taken over once not refreshed for "
                "PREP_LOCK_STALE_S seconds, default 600)"
            )
        return _run_stage_locked(stage)


def _run_stage_locked(stage: Stage) -> dict[str, Any] | None:
    group = launched_group(stage.run_config)
    if group is not None:
        return run_together(stage, group)
    started_ns = time.time_ns()
    planned, chash = run_share(stage)
    waiting = [u.id for u in planned.units if unit_state(stage, u, chash) != "done"]
    if waiting:
        log.info(
            "stage %s: %d units of other ranks still running; the last rank merges",
            stage.name,
            len(waiting),
        )
        return None
    return merge(
        stage,
        planned,
        chash,
        others_may_merge=stage.run_config.world_size > 1,
        started_ns=started_ns,
    )


def run_share(stage: Stage) -> tuple[Planned, str]:
    """Plan, then run this rank's pending units; raises when any of them failed."""
    run = stage.run_config
    planned = stage.plan()
    units = planned.units
    if not units:
        raise PrepError(f"stage {stage.name}: nothing to do: {why_no_samples(stage)}")
    chash = stage.config_hash()
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
    failures = [r for r in run_units(stage, pending, planned.context, chash) if r.error]
    if failures:
        first = failures[0]
        raise PrepError(
            f"stage {stage.name}: {len(failures)} unit(s) failed, first {first.unit_id}: {first.error}"
        )
    return planned, chash


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
    planned, chash, error = Planned([]), "", None
    try:
        planned, chash = run_share(stage)
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
            summary = merge(stage, planned, chash, others_may_merge=False)
        except Exception as exc:  # re-raised after the barrier
            error = exc
    if group.count(error is not None):
        if error is not None:
            raise error
        raise PrepError(f"stage {stage.name}: rank 0 failed to merge; its message says why")
    return summary


def merge(
    stage: Stage,
    planned: Planned,
    chash: str,
    *,
    others_may_merge: bool,
    started_ns: int | None = None,
) -> dict[str, Any] | None:
    """Finalize under the stage's merge lock; None when another rank merges or just merged."""
    units = planned.units
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
        summary = stage.finalize(units, planned.context)
        summary.update(
            {
                "stage": stage.name,
                "stage_version": stage.version,
                "config_hash": chash,
                "plan_fingerprint": fingerprint,
                lineage.SUMMARY_KEY: lineage.record(stage.layout, stage.name),
                lineage.OWN_DIGEST: lineage.output_digest(stage.layout, stage.name),
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
        "recipe": stage.recipe_record(),
    }
