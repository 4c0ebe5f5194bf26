"""The ``prep`` command line. Commands only parse flags, build configs and call the runner."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

import manifests
import recipes
from pipeline import registry
from pipeline.cli_options import value_rules, with_stage_options
from pipeline.config import check_option_values, merge_options
from pipeline.errors import DEBUG, PrepError, handled_errors, stop_on_sigterm
from pipeline.execution import all_defaults, build_run_config, build_stage, execute, run_all
from pipeline.export_commands import export_command, list_exports
from pipeline.launch_slurm import make_launch_app
from pipeline.layout import Layout
from pipeline.native_logs import filter_native_stderr, unfilter_native_stderr
from pipeline.recipes import doctor_checks as recipe_checks
from pipeline.recipes import list_recipes, merged_options, require_needs

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Offline data preparation for gloss-free sign language translation "
    "(manifests, pseudo-glosses, hand captions, features, WebDataset shards).",
)
log = logging.getLogger("prep")


@app.callback()
def global_options(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks and debug logs (native libraries' too)."
    ),
) -> None:
    """Offline data preparation for gloss-free sign language translation."""
    DEBUG["on"] = debug
    if debug:
        unfilter_native_stderr()
        logging.getLogger().setLevel(logging.DEBUG)
    for name, why in registry.broken().items():  # a broken plug-in costs one line, not prep
        typer.echo(f"prep: warning: plug-in stage {name} is left out: {why}", err=True)


RUNNER = "Runner"
RECIPE_HELP = (
    f"A paper's settings: {', '.join(recipes.available())} (see `prep recipes`); "
    "--config and flags win, and outputs record every key that differs."
)


@app.command()
@with_stage_options
def run(
    stage: Optional[str] = typer.Option(
        None,
        help=f"Stage to run: {', '.join(registry.names())}, or 'all' for every stage in order.",
    ),
    dataset: Optional[str] = typer.Option(
        None, help=f"Dataset layout: {', '.join(manifests.available())}."
    ),
    root: Optional[Path] = typer.Option(
        None, help="Dataset root (for generic: the CSV/JSONL file)."
    ),
    out: Optional[Path] = typer.Option(None, help="Output folder; every stage writes under it."),
    config: Optional[Path] = typer.Option(
        None, help="TOML/YAML/JSON file with the same keys; flags win."
    ),
    recipe: Optional[str] = typer.Option(None, help=RECIPE_HELP),
    rank: Optional[int] = typer.Option(
        None,
        min=0,
        help="This process's rank (default: RANK or SLURM_ARRAY_TASK_ID, else 0).",
        rich_help_panel=RUNNER,
    ),
    world_size: Optional[int] = typer.Option(
        None,
        min=1,
        help="Number of ranks (default: WORLD_SIZE or SLURM_ARRAY_TASK_COUNT, else 1).",
        rich_help_panel=RUNNER,
    ),
    workers: Optional[int] = typer.Option(
        None,
        min=1,
        help="Worker processes per rank (default: PREP_WORKERS or 1).",
        rich_help_panel=RUNNER,
    ),
    overwrite: Optional[bool] = typer.Option(
        None,
        "--overwrite/--no-overwrite",
        help="Redo finished units instead of skipping them.",
        rich_help_panel=RUNNER,
    ),
    quiet: Optional[bool] = typer.Option(
        None,
        "--quiet/--progress",
        help="Plain log lines instead of a progress bar.",
        rich_help_panel=RUNNER,
    ),
    retries: Optional[int] = typer.Option(
        None,
        min=0,
        help="Retries of a failed unit before the run fails (default: 1).",
        rich_help_panel=RUNNER,
    ),
    max_quarantine_share: Optional[float] = typer.Option(
        None,
        min=0,
        max=1,
        help="Exit 1 when a stage quarantines more than this share of a split's samples; outputs are kept (default: 0.2).",
        rich_help_panel=RUNNER,
    ),
    **stage_options: Any,
) -> None:
    """Run a stage (or all stages) over a corpus; finished work units are skipped on re-runs."""
    flags = {
        "stage": stage,
        "dataset": dataset,
        "root": root,
        "out": out,
        "rank": rank,
        "world_size": world_size,
        "workers": workers,
        "overwrite": overwrite,
        "quiet": quiet,
        "retries": retries,
        "max_quarantine_share": max_quarantine_share,
        "recipe": recipe,
        **stage_options,
    }
    with handled_errors():
        options = checked_options(flags, config)
        run_config = build_run_config(options)
        names = registry.resolve(options["stage"])
        require_needs(options, names)
        run_all(names, options, run_config)


def checked_options(flags: dict[str, Any], config: Optional[Path]) -> dict[str, Any]:
    """Defaults < recipe < config file < flags, each value checked against the type and range
    its ``prep run`` flag declares: a config file holds the same keys, so the same rules."""
    defaults = all_defaults()
    options = merged_options(flags, config, defaults)
    check_option_values(options, value_rules(run), defaults, flags)
    return options


@app.command()
def synth(
    layout: str = typer.Option("phoenix14t", help="phoenix14t, csl-daily or generic."),
    out: Path = typer.Option(..., help="Folder to write the corpus into."),
    clips: int = typer.Option(12, help="Number of clips (ignored rows beyond it in --sentences)."),
    frames: str = typer.Option("16:40", help="Frame count range MIN:MAX for generated sentences."),
    size: Optional[str] = typer.Option(
        None, help="Frame size WxH (default: the layout's, 160x120 for generic)."
    ),
    sentences: Optional[Path] = typer.Option(
        None, help="A name|num_frames|orth|translation file to take sentences and lengths from."
    ),
    max_frames: Optional[int] = typer.Option(None, help="Cap frame counts taken from --sentences."),
    language: str = typer.Option(
        "de", help="Language of the generated sentences (de or zh) for generic."
    ),
) -> None:
    """Write a small synthetic corpus in an official layout; prints the --root to use."""
    from pipeline import synthetic

    with handled_errors():
        root = make_corpus(
            synthetic, layout, out, clips, frames, size, sentences, max_frames, language
        )
        typer.echo(str(root))


def make_corpus(
    synthetic, layout, out, clips, frames, size, sentences, max_frames, language
) -> Path:
    try:
        low, high = (int(x) for x in frames.split(":"))
        dims = tuple(int(x) for x in size.lower().split("x")) if size else None
    except ValueError as exc:
        raise PrepError(f"bad --frames or --size: {exc}") from exc
    language = "zh" if layout == "csl-daily" else language
    if sentences:
        samples = synthetic.samples_from_file(sentences, clips, max_frames)
    else:
        samples = synthetic.default_samples(language, clips, (low, high))
    size_option = {"size": dims} if dims else {}
    if layout == "phoenix14t":
        return synthetic.write_phoenix14t(out, samples, **size_option)
    if layout == "csl-daily":
        return synthetic.write_csl_daily(out, samples, **size_option)
    if layout == "generic":
        return synthetic.write_generic(out, samples, language, **size_option)
    raise PrepError(f"unknown layout {layout!r}; choose one of {', '.join(manifests.available())}")


@app.command()
def demo(
    out: Path = typer.Option(
        Path("demo-out"), help="Folder for the synthetic corpus and all outputs."
    ),
    clips: int = typer.Option(12, help="Clips in the synthetic Phoenix14T corpus."),
) -> None:
    """Generate a small synthetic Phoenix14T corpus and run every stage end to end.

    Features come from a tiny randomly initialised DINOv2 written next to the corpus: the demo
    shows the plumbing offline; real runs pass --dinov2 with real weights.
    """
    from pipeline import synthetic

    with handled_errors():
        out = out.resolve()
        corpus = make_corpus(
            synthetic, "phoenix14t", out / "corpus", clips, "16:40", None, None, None, "de"
        )
        flags: dict[str, Any] = {
            "stage": "all",
            "dataset": "phoenix14t",
            "root": corpus,
            "out": out / "prepared",
        }
        for stage in registry.registered().values():
            flags.update(stage.demo_options(out / "models"))
        options = merge_options(flags, {}, all_defaults())
        run_config = build_run_config(options)
        for name in registry.names():
            execute(name, options, run_config)
        shards = Layout(run_config.out).shards_root()
        typer.echo(f"corpus:  {corpus}\noutputs: {run_config.out}\nshards:  {shards}")


@app.command()
def verify(
    out: Path = typer.Option(..., help="The output folder of a run."),
    max_quarantine_share: float = typer.Option(
        0.2,
        help="A stage's split that quarantined more than this share of its samples is a problem.",
    ),
) -> None:
    """Re-read what every finished stage published, with each stage's own checks (tables: rows,
    ids, quarantine; shards: checksums, sizes, counts, each manifest sample once, metadata, frame
    times, array shapes) and each split's quarantine share; exit 1 on any problem."""
    from pipeline.verify import format_reports
    from pipeline.verify import verify as verify_outputs

    with handled_errors():
        reports = verify_outputs(out.expanduser().resolve(), max_quarantine_share)
    typer.echo(format_reports(reports))
    if any(r.problems for r in reports):
        raise typer.Exit(1)


@app.command()
def status(
    out: Path = typer.Option(..., help="The output folder of a run, finished or not."),
) -> None:
    """Per stage and split: units done of planned, samples, quarantined by reason, throughput, last error."""
    from pipeline.status import format_status, stage_states
    from pipeline.status import status as read_status

    with handled_errors():
        where = out.expanduser().resolve()
        typer.echo(format_status(read_status(where), stage_states(where)))


@app.command()
def report(
    out: Path = typer.Option(..., help="The output folder of a run."),
    clips: int = typer.Option(
        4, min=0, help="Clips shown in the hand contact sheet and the caption timelines."
    ),
) -> None:
    """Write <out>/report/index.html: one static page (images embedded) with every stage's
    statistics, plots, hand crops, caption timelines and provenance; stages not run say so."""
    from pipeline.report import write_report

    with handled_errors():
        typer.echo(str(write_report(out.expanduser().resolve(), clips=clips)))


@app.command()
@with_stage_options
def doctor(
    config: Optional[Path] = typer.Option(
        None, help="TOML/YAML/JSON file with the keys of `prep run`; flags win."
    ),
    recipe: Optional[str] = typer.Option(None, help=RECIPE_HELP),
    stage: Optional[str] = typer.Option(
        None, help=f"Stage to check: {', '.join(registry.names())} or all (default)."
    ),
    dataset: Optional[str] = typer.Option(
        None, help=f"{', '.join(manifests.available())} (decides the pseudo-gloss languages)."
    ),
    root: Optional[Path] = typer.Option(
        None, help="Dataset root (for generic: the CSV/JSONL file)."
    ),
    **stage_options: Any,
) -> None:
    """Libraries, device, models and backends found here, and what each stage would use; exit 1
    with one line per missing piece (and how to provide it) when the configuration cannot run.
    Loads no model and downloads nothing."""
    from pipeline.doctor import format_checks, format_problems, run_checks

    flags = {"stage": stage, "dataset": dataset, "root": root, "recipe": recipe, **stage_options}
    with handled_errors():
        options = checked_options(flags, config)
        names = registry.resolve(options["stage"] or "all")
        checks = recipe_checks(options, names) + run_checks(options, names)
    typer.echo(format_checks(checks, names))
    missing = format_problems(checks)
    for line in missing:
        typer.echo(line, err=True)
    if missing:
        raise typer.Exit(1)


@app.command()
@with_stage_options
def plan(
    out: Optional[Path] = typer.Option(
        None, help="Output folder of a run whose manifest is done (<out>/manifest/)."
    ),
    config: Optional[Path] = typer.Option(
        None, help="TOML/YAML/JSON file with the keys of `prep run`; flags win."
    ),
    recipe: Optional[str] = typer.Option(None, help=RECIPE_HELP),
    stage: Optional[str] = typer.Option(
        None, help=f"Stage to estimate: {', '.join(registry.names())} or all (default)."
    ),
    pilot_clips: int = typer.Option(
        4, help="Clips each stage runs on for real (in a temporary folder) to measure its rate."
    ),
    devices: int = typer.Option(1, help="Devices (ranks) to spread the work over in the estimate."),
    **stage_options: Any,
) -> None:
    """Estimate each stage's time on the whole corpus: the manifest's clip and frame counts times
    the rate of a short pilot run of the real stages on this machine; writes <out>/plan.json."""
    from pipeline import plan as planning

    flags = {"out": out, "stage": stage, "recipe": recipe, **stage_options}
    with handled_errors():
        options = checked_options(flags, config)
        if options["out"] is None:
            raise PrepError("--out is required (as a flag or in --config)")
        if devices < 1:
            raise PrepError(f"--devices must be at least 1, got {devices}")
        target = Path(options["out"]).expanduser().resolve()
        names = registry.resolve(options["stage"] or "all")
        require_needs(options, names)
        estimates = planning.plan(
            target, names, lambda name, run: build_stage(name, options, run), pilot_clips
        )
        record = planning.write_plan(target, planning.plan_record(estimates, devices, pilot_clips))
    typer.echo(planning.format_plan(estimates, devices))
    typer.echo(f"written to {record}")


app.command("export")(export_command)
app.command("exports")(list_exports)
app.command("recipes")(list_recipes)
app.add_typer(make_launch_app(checked_options), name="launch")


def add_stage_commands() -> None:
    """Commands a stage brings along (e.g. converting a checkpoint once), under their own names."""
    for stage in registry.registered().values():
        for name, command in stage.commands:
            app.command(name)(command)


add_stage_commands()


def main() -> None:
    from pipeline.config import enforce_offline, log_level

    enforce_offline()  # before anything imports huggingface_hub, which reads it once
    try:
        level = log_level()
    except PrepError as exc:  # before logging is set up: one line, not a traceback
        raise SystemExit(f"prep: error: {exc}") from None
    logging.basicConfig(level=level, format="prep: %(message)s", stream=sys.stderr)
    stop_on_sigterm()
    filter_native_stderr()
    app(prog_name="prep")


if __name__ == "__main__":
    main()
