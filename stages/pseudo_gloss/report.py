"""The pseudo-gloss stage's part of ``prep report``: vocabulary size, glosses per clip,
out-of-vocabulary rates and the most frequent glosses, so a vocabulary dominated by a few
words or a language without a tagger shows before training on it."""

from __future__ import annotations

import json

import numpy as np

from pipeline.report import plots
from pipeline.report.data import RunOutputs
from pipeline.report.frames import FrameReader
from pipeline.report.html import Section, esc, figure, not_run, percent, table
from pipeline.report.sections import quarantine_block
from stages.pseudo_gloss.vocabulary import VOCAB_FILE

STAGE = "pseudo-gloss"
TOP_GLOSSES = 50


def report_sections(outputs: RunOutputs, frames: FrameReader, clips: int) -> list[Section]:
    return [pseudo_gloss_section(outputs)]


def pseudo_gloss_section(outputs: RunOutputs) -> Section:
    title = "Pseudo-glosses"
    if not outputs.ran(STAGE):
        return not_run("pseudo-gloss", title, f"no pseudo-glosses (prep run --stage {STAGE})")
    summary = outputs.summary(STAGE)
    vocab_path = outputs.layout.stage_file(STAGE, VOCAB_FILE)
    glosses = json.loads(vocab_path.read_text())["glosses"] if vocab_path.is_file() else []
    rows = []
    for split in outputs.splits(STAGE):
        info = summary["splits"][split]
        lengths = [len(r["pseudo_glosses"] or []) for r in outputs.table(STAGE, split)]
        rows.append(
            [
                split,
                info.get("samples"),
                float(np.mean(lengths)) if lengths else None,
                percent(info["oov_rate"]) if info.get("oov_rate") is not None else None,
                info.get("empty_sequences"),
                sum(info.get("quarantined", {}).values()),
            ]
        )
    top = sorted(glosses, key=lambda g: (-g["count"], g["gloss"]))[:TOP_GLOSSES]
    body = (
        f"<p>Vocabulary (train): <b>{len(glosses):,}</b> pseudo-glosses"
        f" (summary: {summary.get('vocabulary_size', '–')}); prototypes "
        f"{esc(str(summary.get('prototypes', {}).get('shape', '–')))} from "
        f"{esc(str(summary.get('prototypes', {}).get('source', '–')))}.</p>"
        + _sources(outputs.provenance(STAGE))
        + table(
            ["split", "samples", "glosses per clip", "OOV rate", "empty sequences", "quarantined"],
            rows,
        )
    )
    dropped = summary.get("dropped_by_frequency") or []
    if dropped:
        body += f"<p>Dropped by the frequency filter: {esc(', '.join(map(str, dropped)))}</p>"
    if top:
        chart = plots.bar_chart(
            [g["gloss"] for g in top],
            [g["count"] for g in top],
            f"Top {len(top)} pseudo-glosses in train",
            "occurrences",
        )
        body += figure(
            chart, f"Top {len(top)} pseudo-glosses by frequency (train)", "plot-top-glosses"
        )
    return Section("pseudo-gloss", title, body + quarantine_block(outputs, STAGE))


def _sources(recorded: dict) -> str:
    """The tagger per language and where the prototypes came from: what the glosses depend on."""
    pipelines = recorded.get("pipelines") or {}
    found = [f"{k}: {v}" for k, v in sorted(pipelines.items())]
    if recorded.get("prototype_source"):
        found.append(f"prototypes: {recorded['prototype_source']}")
    return f"<p>Taggers and sources: {esc('; '.join(found) or '–')}.</p>"
