"""``prep launch slurm``: one Slurm array per stage, each task one rank, chained by ``afterok``.

Array tasks are ranks started apart (:mod:`pipeline.distributed`): task K runs ``prep run
--rank K --world-size N`` for its share of the stage's units and the last task to commit merges,
so a stage is merged when its array has completed, and the next stage's array, submitted with
``--dependency=afterok:<previous job>``, starts only then; a failed or cancelled task leaves the
later arrays pending for ever (``DependencyNeverSatisfied``) until they are cancelled.

The batch script of each stage is written to ``<out>/launch/<stage>.sbatch`` (the array range is
given on the ``sbatch`` command line, not in the script), so one task is resubmitted alone with
``sbatch --array=K <out>/launch/<stage>.sbatch`` or ``prep launch slurm --only-rank K ...``; it
resumes from its committed units. Tasks are requeueable (``--requeue``); Slurm sends SIGTERM
``--signal-seconds`` before the time limit (``--signal=B:TERM@N``), prep stops between units and
keeps what it committed, and a requeued task resumes and says so in its log (appended, not
overwritten). Only stages that load models (``Stage.uses_gpu``) ask for GPUs.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from pipeline import registry
from pipeline.errors import PrepError, handled_errors
from pipeline.execution import build_run_config, build_stage
from pipeline.layout import Layout
from pipeline.recipes import require_needs

log = logging.getLogger("prep")

SLURM = "Slurm"
SET_BY_LAUNCH = ("--rank", "--world-size", "--stage")  # per task, written by the launcher
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@dataclass(frozen=True)
class SlurmSettings:
    """What every array asks Slurm for; GPUs only for stages that load models."""

    array: int
    gpus_per_task: int = 1
    cpus_per_task: int = 4
    partition: str | None = None
    time: str | None = None
    signal_seconds: int = 120
    requeue: bool = True
    only_rank: int | None = None
    after: str | None = None

    def array_spec(self) -> str:
        return str(self.only_rank) if self.only_rank is not None else f"0-{self.array - 1}"


def batch_script(
    stage: str, uses_gpu: bool, run_args: list[str], settings: SlurmSettings, out: Path
) -> str:
    """The sbatch script of one stage: directives, then ``prep run`` for rank = array task id."""
    layout = Layout(out)
    directives = [
        f"--job-name=prep-{stage}",
        f"--output={layout.launch_log_pattern(stage)}",
        "--open-mode=append",  # a requeued task's log keeps what the first attempt said
        f"--chdir={Path.cwd()}",
        f"--cpus-per-task={settings.cpus_per_task}",
        f"--signal=B:TERM@{settings.signal_seconds}",
        "--requeue" if settings.requeue else "--no-requeue",
    ]
    if settings.partition:
        directives.append(f"--partition={settings.partition}")
    if settings.time:
        directives.append(f"--time={settings.time}")
    if uses_gpu and settings.gpus_per_task > 0:
        directives.append(f"--gpus-per-task={settings.gpus_per_task}")
    prep = [sys.executable, "-m", "pipeline.cli", "run", "--quiet", *run_args]
    task = '"$SLURM_ARRAY_TASK_ID"'
    command = " ".join(shlex.quote(a) for a in prep)
    command += f" --stage {shlex.quote(stage)} --rank {task} --world-size {settings.array}"
    return "\n".join(
        [
            "#!/bin/bash",
            f"# Written by `prep launch slurm`: stage {stage}, one array task per rank of {settings.array}.",
            f"# Resubmit task K alone (it resumes from its committed units): sbatch --array=K {layout.launch_script(stage)}",
            *(f"#SBATCH {d}" for d in directives),
            "set -eu",
            "# ranks run apart: no launcher variables may make prep look for a process group",
            "unset RANK WORLD_SIZE MASTER_ADDR MASTER_PORT LOCAL_RANK",
            'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then',
            f'    echo "prep: task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} ({stage} rank $SLURM_ARRAY_TASK_ID) was preempted or requeued'
            ' (restart $SLURM_RESTART_COUNT): resuming from its committed units" >&2',
            "fi",
            f"exec {command}",
            "",
        ]
    )


def sbatch_command(script: Path, settings: SlurmSettings, after: str | None) -> list[str]:
    command = ["sbatch", "--parsable", f"--array={settings.array_spec()}"]
    if after:
        command.append(f"--dependency=afterok:{after}")
    return [*command, str(script)]


def submit(command: list[str]) -> str:
    """The job id ``sbatch --parsable`` printed; sbatch's own message when it refused."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise PrepError("sbatch not found: run prep launch slurm on a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise PrepError("sbatch did not answer within 120 s: is slurmctld reachable?") from None
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise PrepError(f"sbatch refused {command[-1]}: {reason[-1] if reason else 'no message'}")
    return done.stdout.strip().split(";")[0]


def stage_names_and_out(
    run_args: list[str], parse_run: Callable[[list[str]], dict[str, Any]]
) -> tuple[list[str], Path]:
    """Check the ``prep run`` options as ``prep run`` would (configs, models, paths), here,
    before anything waits in a queue; returns the stages in run order and ``--out``."""
    for token in run_args:
        if token.split("=")[0] in SET_BY_LAUNCH[:2]:
            raise PrepError(
                f"{token.split('=')[0]} is set per task by prep launch slurm (--array, --only-rank)"
            )
    options = parse_run(list(run_args))  # click consumes the list it parses
    run_config = build_run_config(options)
    names = registry.resolve(options["stage"])
    require_needs(options, names)
    for name in names:
        build_stage(name, options, run_config)
    return names, run_config.out


def without_stage(run_args: list[str]) -> list[str]:
    """``run_args`` less ``--stage X`` / ``--stage=X``: each array names its own stage."""
    kept, skip = [], False
    for token in run_args:
        if skip:
            skip = False
        elif token == "--stage":
            skip = True
        elif not token.startswith("--stage="):
            kept.append(token)
    return kept


def launch(
    run_args: list[str], settings: SlurmSettings, parse_run: Callable, dry_run: bool
) -> list[str]:
    """Write each stage's script and submit the arrays in order; the lines to print."""
    names, out = stage_names_and_out(run_args, parse_run)
    layout, lines, previous = Layout(out), [], settings.after
    passed = without_stage(run_args)
    for name in names:
        script_text = batch_script(name, registry.get(name).uses_gpu, passed, settings, out)
        script = layout.launch_script(name)
        command = sbatch_command(script, settings, previous)
        if dry_run:
            lines += [f"# {shlex.join(command)}", script_text]
            previous = f"<{name} job>"
            continue
        layout.launch_log_pattern(name).parent.mkdir(parents=True, exist_ok=True)
        script.write_text(script_text)
        previous = submit(command)
        lines.append(f"{name} {previous}")
    if not dry_run:
        lines.append(previous or "")
    return lines


def run_options_parser(ctx: typer.Context, check_options: Callable) -> Callable:
    """Parses ``prep run``'s flags with the ``run`` command of this very CLI, then checks them."""

    def parse_run(args: list[str]) -> dict[str, Any]:
        run_command = ctx.find_root().command.commands["run"]  # type: ignore[attr-defined]
        params = dict(run_command.make_context("run", args).params)
        config = params.pop("config")
        return check_options(params, config)

    return parse_run


def make_launch_app(check_options: Callable[[dict[str, Any], Any], dict[str, Any]]) -> typer.Typer:
    """The ``prep launch`` commands; ``check_options(flags, config)`` is what ``prep run`` uses
    to merge and check its flags with a config file and recipe."""
    launch_app = typer.Typer(
        no_args_is_help=True, help="Submit prep to a cluster scheduler (Slurm)."
    )

    @launch_app.command("slurm", context_settings=PASS_THROUGH)
    def slurm(
        ctx: typer.Context,
        array: int = typer.Option(..., min=1, help="Array tasks per stage: the world size."),
        gpus_per_task: int = typer.Option(
            1,
            min=0,
            help="GPUs per task of stages that load models (0: a CPU cluster).",
            rich_help_panel=SLURM,
        ),
        cpus_per_task: int = typer.Option(4, min=1, help="CPUs per task.", rich_help_panel=SLURM),
        partition: Optional[str] = typer.Option(
            None, help="Slurm partition.", rich_help_panel=SLURM
        ),
        time: Optional[str] = typer.Option(
            None, help="Time limit per task, e.g. 24:00:00.", rich_help_panel=SLURM
        ),
        signal_seconds: int = typer.Option(
            120,
            min=1,
            help="SIGTERM this long before the time limit (--signal=B:TERM@N): prep stops between units.",
            rich_help_panel=SLURM,
        ),
        requeue: bool = typer.Option(
            True,
            "--requeue/--no-requeue",
            help="Let Slurm requeue a preempted task.",
            rich_help_panel=SLURM,
        ),
        only_rank: Optional[int] = typer.Option(
            None,
            min=0,
            help="Submit only this task (a killed or failed one): it resumes.",
            rich_help_panel=SLURM,
        ),
        after: Optional[str] = typer.Option(
            None,
            help="Start the first array after this job succeeded (afterok).",
            rich_help_panel=SLURM,
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the scripts; submit nothing."),
    ) -> None:
        """Submit one array per stage (`prep run` options after `--`), chained by afterok; prints
        `<stage> <job id>` per array and, last, the final job id."""
        settings = SlurmSettings(
            array=array,
            gpus_per_task=gpus_per_task,
            cpus_per_task=cpus_per_task,
            partition=partition,
            time=time,
            signal_seconds=signal_seconds,
            requeue=requeue,
            only_rank=only_rank,
            after=after,
        )
        with handled_errors():
            if only_rank is not None and only_rank >= array:
                raise PrepError(f"--only-rank {only_rank} is not a task of --array {array}")
            lines = launch(
                list(ctx.args), settings, run_options_parser(ctx, check_options), dry_run
            )
        for line in lines:
            typer.echo(line)

    return launch_app
