"""From merged options to finished stages: the run configuration, prerequisites first, the
printed summary and the quarantine limit. The CLI's ``run``, ``demo`` and ``plan`` share it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

import manifests
from pipeline import lineage, registry
from pipeline.config import RunConfig, default_workers, launched_together, resolve_rank
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.runner import run_stage
from pipeline.stage import Stage

log = logging.getLogger("prep")

RUN_DEFAULTS: dict[str, Any] = {
    "stage": None,
    "dataset": None,
    "root": None,
    "out": None,
    "rank": None,
    "world_size": None,
    "workers": None,
    "overwrite": False,
    "quiet": False,
    "retries": 1,
    "max_quarantine_share": 0.2,
}
SUMMARY_COMMON = ("samples", "expected", "quarantined")


def all_defaults() -> dict[str, Any]:
    """Every key a config file may hold: the run's own and every registered stage's options."""
    return {**RUN_DEFAULTS, **registry.option_defaults()}


def build_run_config(options: dict[str, Any]) -> RunConfig:
    for key in ("stage", "dataset", "root", "out"):
        if options[key] is None:
            raise PrepError(f"--{key.replace('_', '-')} is required (as a flag or in --config)")
    if options["dataset"] not in manifests.available():
        raise PrepError(
            f"unknown dataset {options['dataset']!r}; choose one of {', '.join(manifests.available())}"
        )
    root = Path(options["root"]).expanduser()
    if not root.exists():
        raise PrepError(f"--root does not exist: {root}")
    rank, world_size = resolve_rank(options["rank"], options["world_size"])
    return RunConfig(
        dataset=options["dataset"],
        root=root.resolve(),
        out=Path(options["out"]).expanduser().resolve(),
        rank=rank,
        world_size=world_size,
        workers=options["workers"] or default_workers(),
        overwrite=bool(options["overwrite"]),
        quiet=bool(options["quiet"]),
        retries=int(options["retries"]),
        max_quarantine_share=float(options["max_quarantine_share"]),
        recipe=options.get("recipe"),
    )


def build_stage(name: str, options: dict[str, Any], run_config: RunConfig) -> Stage:
    return registry.build(name, options, run_config)


def execute(name: str, options: dict[str, Any], run_config: RunConfig) -> bool:
    """Run ``name``, running the stages it reads first when their outputs are missing.

    False when this rank's share is done but another rank started apart merges it later.
    """
    stage = build_stage(name, options, run_config)
    for required in stage.requires:
        if not Layout(run_config.out).summary(required).is_file():
            log.info("stage %s needs %s first", name, required)
            if not execute(required, options, run_config):
                log.info("stage %s waits for %s to be merged", name, required)
                return False
    summary = run_stage(stage)
    if summary is not None:
        typer.echo(format_summary(summary, stage.summary_highlights))
        for later, why in lineage.made_stale_by(stage.layout, name).items():
            refresh = lineage.refresh_command(stage.layout, later)
            typer.echo(f"prep: warning: {later} is now stale ({why}): {refresh}", err=True)
        check_quarantine_share(
            summary, run_config.max_quarantine_share, stage.layout.quarantine_table(name)
        )
    return summary is not None or launched_together(run_config.rank, run_config.world_size)


def run_all(names: list[str], options: dict[str, Any], run_config: RunConfig) -> None:
    """Build every stage first (options and models checked before any work), then run in order."""
    for name in names:
        build_stage(name, options, run_config)
    for position, name in enumerate(names):
        if not execute(name, options, run_config):
            later = ", ".join(names[position + 1 :])
            if later:
                log.info(
                    "not starting %s: they need %s merged; run them after the last rank merges",
                    later,
                    name,
                )
            return


def format_summary(summary: dict[str, Any], highlights: tuple[str, ...] = ()) -> str:
    """Per split: samples, the stage's own figures (e.g. OOV rate), quarantine counts by reason."""
    lines = [
        f"{summary['stage']} (v{summary['stage_version']}): outputs in {summary.get('outputs', '')}"
    ]
    for key in highlights:
        if key in summary:
            lines.append(f"  {key.replace('_', ' ')}: {summary[key]}")
    for split, info in summary.get("splits", {}).items():
        expected = info.get("expected")
        note = f" (release has {expected})" if expected and expected != info["samples"] else ""
        extra = "".join(
            f"; {k.replace('_', ' ')} {v}" for k, v in info.items() if k not in SUMMARY_COMMON
        )
        quarantined = (
            ", ".join(f"{r} {n}" for r, n in info.get("quarantined", {}).items()) or "none"
        )
        lines.append(
            f"  {split:<8} {info['samples']:>6} samples{note}{extra}; quarantined: {quarantined}"
        )
    return "\n".join(lines)


def check_quarantine_share(summary: dict[str, Any], limit: float, table: Path) -> None:
    """A stage that quarantines more than ``limit`` of a split is not a run to train on: fail,
    naming the split, its top reasons and where the rows are (the outputs stay)."""
    for split, info in summary.get("splits", {}).items():
        reasons = info.get("quarantined", {})
        quarantined = sum(reasons.values())
        total = info["samples"] + quarantined
        if total and quarantined / total > limit:
            top = ", ".join(
                f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            )
            raise PrepError(
                f"stage {summary['stage']}: split {split} has {quarantined / total:.0%} of its samples "
                f"quarantined ({quarantined} of {total}: {top}), over --max-quarantine-share {limit:g}; "
                f"see {table}; outputs are kept"
            )
