"""``prep status``: progress of every stage from what is on disk, also for a crashed run.

Per stage and split: committed units of the latest plan, samples written, quarantined by
reason, throughput from the units' own timings, the last unit error, and the pieces of units in
progress already journaled (hand-captions: chunks captioned before a crash).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import lineage, registry
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.layout import DONE_MARKER, UNIT_QUARANTINE, UNIT_STATS, Layout


@dataclass
class SplitStatus:
    stage: str
    split: str
    units_done: int = 0
    units_total: int = 0
    samples: int = 0
    frames: int = 0
    seconds: float = 0.0
    quarantined: Counter = field(default_factory=Counter)
    last_error: str = ""
    journaled: int = 0  # finished pieces of uncommitted units


def status(out: Path) -> list[SplitStatus]:
    layout = Layout(out)
    units_root = Layout(out).units_root()
    if not units_root.is_dir():
        raise PrepError(f"nothing has run under {out} (no _units/ folder)")
    rows = []
    ran = {p.name for p in units_root.iterdir() if p.is_dir()}
    for stage in [*(s for s in registry.names() if s in ran), *sorted(ran - set(registry.names()))]:
        rows += stage_status(layout, stage)
    return rows


def stage_states(out: Path) -> list[tuple[str, str]]:
    """Every registered stage in run order: done, stale (naming the upstream that changed
    after it and the command that redoes it), partial (units committed of planned) or not run."""
    layout = Layout(out)
    stale = lineage.stale_stages(layout)
    states = []
    for stage in registry.names():
        if stage in stale:
            state = f"stale: {stale[stage]}; {lineage.refresh_command(layout, stage)}"
        elif layout.summary(stage).is_file():
            state = "done"
        elif layout.plan_record(stage).is_file():
            rows = stage_status(layout, stage)
            done, total = sum(r.units_done for r in rows), sum(r.units_total for r in rows)
            state = f"partial: {done}/{total} units"
        else:
            state = "not run"
        if state.startswith(("partial", "not run")):
            state += "".join(f"\n{'':<15}{line}" for line in rank_progress(layout, stage))
        states.append((stage, state))
    return states


def rank_progress(layout: Layout, stage: str) -> list[str]:
    """Per rank of the latest plan: committed units of its share (units go to ranks by plan
    position modulo the world size), and why its newest Slurm task log says it ended early."""
    committed, world = _committed_in_plan_order(layout, stage)
    logged = {
        int(p.stem.rsplit("_", 1)[1]) for p in layout.launch_dir().glob(f"logs/{stage}-*_*.log")
    }
    lines = []
    for rank in sorted(logged | (set(range(world)) if world > 1 else set())):
        line = f"rank {rank}"
        if committed and rank < world:
            share = committed[rank::world]
            line += f": {sum(share)}/{len(share)} units"
        ended = _ended_early(layout, stage, rank)
        lines.append(f"{line}; {ended}" if ended else line)
    return lines


def _committed_in_plan_order(layout: Layout, stage: str) -> tuple[list[bool], int]:
    """Whether each unit of the latest plan is committed, in plan order, and the world size of
    the run that wrote the plan (1 when unknown)."""
    path = layout.plan_record(stage)
    if not path.is_file():
        return [], 1
    plan = json.loads(path.read_text())
    record = layout.run_record(stage, plan.get("config_hash", ""))
    world = json.loads(record.read_text()).get("world_size", 1) if record.is_file() else 1
    committed = []
    for split in sorted(plan["splits"], key=m.split_order):  # stages plan splits in this order
        for index in range(plan["splits"][split]["units"]):
            marker = layout.unit_marker(stage, f"{split}/{index:05d}")
            committed.append(
                marker.is_file()
                and json.loads(marker.read_text()).get("config_hash") == plan.get("config_hash")
            )
    return committed, max(1, int(world))


EARLY_ENDS = {"prep: error:": "failed", "prep: stopped by": "stopped"}


def _ended_early(layout: Layout, stage: str, rank: int) -> str:
    """``failed: <prep's one line> (log <path>)`` when the newest log of this rank's task ends
    with an error or a stop; empty when it ended well, still runs or never logged."""
    logs = layout.launch_logs(stage, rank)
    if not logs:
        return ""
    lines = [line for line in logs[-1].read_text(errors="replace").splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("prep: ")]  # Slurm may write after prep
    for start, what in EARLY_ENDS.items():
        if said and said[-1].startswith(start):
            return f"{what}: {said[-1]} (log {logs[-1]})"
    if lines and lines[-1].startswith("slurmstepd"):  # killed before prep could say anything
        return f"ended: {lines[-1]} (log {logs[-1]})"
    return ""


def stage_status(layout: Layout, stage: str) -> list[SplitStatus]:
    plan_path = layout.plan_record(stage)
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {"splits": {}}
    errors = _errors(layout, stage)
    result = []
    for split in sorted(plan["splits"], key=m.split_order):
        row = SplitStatus(stage, split, units_total=plan["splits"][split]["units"])
        for unit_dir in sorted((layout.units_dir(stage) / split).glob("[0-9]*")):
            marker = unit_dir / DONE_MARKER
            if not marker.is_file() or json.loads(marker.read_text()).get(
                "config_hash"
            ) != plan.get("config_hash"):
                continue
            row.units_done += 1
            stats = json.loads((unit_dir / UNIT_STATS).read_text())
            row.samples += stats["counts"].get("ok", 0)
            row.frames += stats["counts"].get("frames", 0)
            row.seconds += stats.get("seconds", 0.0)
            if (unit_dir / UNIT_QUARANTINE).is_file():
                row.quarantined.update(
                    r["reason"] for r in m.read_table(unit_dir / UNIT_QUARANTINE).to_pylist()
                )
        row.last_error = errors.get(split, "")
        row.journaled = _journaled(layout, stage, split)
        result.append(row)
    return result


def _journaled(layout: Layout, stage: str, split: str) -> int:
    """Whole lines after each journal's header line (see :mod:`pipeline.journal`)."""
    folder = layout.units_dir(stage) / "_journal"
    journals = folder.glob(f"{split}-*.jsonl") if folder.is_dir() else ()
    return sum(max(0, path.read_bytes().count(b"\n") - 1) for path in journals)


def _errors(layout: Layout, stage: str) -> dict[str, str]:
    folder = layout.units_dir(stage) / "_errors"
    found: dict[str, tuple[float, str]] = {}
    for path in folder.glob("*.json") if folder.is_dir() else ():
        record = json.loads(path.read_text())
        split = record["unit"].split("/")[0]
        if record["at"] >= found.get(split, (0.0, ""))[0]:
            found[split] = (record["at"], f"{record['unit']}: {record['error']}")
    return {split: text for split, (_, text) in found.items()}


def format_status(rows: list[SplitStatus], states: list[tuple[str, str]] = ()) -> str:
    lines = [
        f"{'stage':<14} {'split':<6} {'units':>9} {'samples':>8} {'clips/s':>8} {'frames/s':>9}  quarantined / last error"
    ]
    for r in rows:
        rate = (r.samples / r.seconds) if r.seconds else 0.0
        frame_rate = f"{r.frames / r.seconds:.0f}" if r.seconds and r.frames else "-"
        quarantined = ", ".join(f"{k} {v}" for k, v in sorted(r.quarantined.items())) or "none"
        error = f"; last error {r.last_error}" if r.last_error else ""
        error += f"; {r.journaled} pieces journaled in unfinished units" if r.journaled else ""
        lines.append(
            f"{r.stage:<14} {r.split:<6} {f'{r.units_done}/{r.units_total}':>9} {r.samples:>8} {rate:>8.1f} "
            f"{frame_rate:>9}  {quarantined}{error}"
        )
    if states:
        lines += ["", *(f"{stage:<14} {state}" for stage, state in states)]
    return "\n".join(lines)
