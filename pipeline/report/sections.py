"""Report sections built from tables and summaries: manifest, pseudo-glosses, shards, provenance."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from pipeline.manifest import split_order
from pipeline.report import plots
from pipeline.report.data import STAGES, RunOutputs, shard_paths
from pipeline.report.html import (
    Raw,
    Section,
    esc,
    figure,
    human_bytes,
    not_run,
    percent,
    pretty_json,
    table,
)

QUARANTINE_EXAMPLES = 20
TOP_GLOSSES = 50
PERCENTILES = (5, 50, 95)


def quarantine_block(outputs: RunOutputs, stage: str) -> str:
    """Counts by split and reason, then the first few rejected samples with their detail."""
    rows = outputs.quarantine(stage)
    if not rows:
        return "<p>Quarantined: none.</p>"
    counts = Counter((r["split"] or "–", r["reason"]) for r in rows)
    splits = sorted({s for s, _ in counts}, key=split_order)
    reasons = sorted({r for _, r in counts})
    summary = table(
        ["reason", *splits, "total"],
        [
            [
                reason,
                *(counts[(s, reason)] for s in splits),
                sum(counts[(s, reason)] for s in splits),
            ]
            for reason in reasons
        ],
    )
    examples = table(
        ["split", "id", "reason", "detail"],
        [[r["split"], r["id"], r["reason"], r["detail"]] for r in rows[:QUARANTINE_EXAMPLES]],
        text_columns=(0, 1, 2, 3),
    )
    more = (
        f" (first {QUARANTINE_EXAMPLES} of {len(rows)})" if len(rows) > QUARANTINE_EXAMPLES else ""
    )
    return f"<h3>Quarantined by reason</h3>{summary}<details><summary>Samples{more}</summary>{examples}</details>"


def manifest_section(outputs: RunOutputs) -> Section:
    title = "Manifest"
    if not outputs.ran("manifest"):
        return not_run("manifest", title, "no manifest (prep run --stage manifest)")
    summary = outputs.summary("manifest")
    rows, durations = [], {}
    for split in outputs.splits():
        clips = outputs.table("manifest", split)
        seconds = np.array([c["num_frames"] / c["fps"] for c in clips if c["fps"]], float)
        durations[split] = seconds
        quarantined = summary["splits"][split].get("quarantined", {})
        fps = Counter(c["fps"] for c in clips)
        rows.append(
            [
                split,
                len(clips),
                sum(c["num_frames"] for c in clips),
                _hours(seconds.sum()),
                *(np.percentile(seconds, p) if len(seconds) else None for p in PERCENTILES),
                seconds.max() if len(seconds) else None,
                ", ".join(f"{f:g} ({n})" for f, n in sorted(fps.items())),
                sum(quarantined.values()),
                ", ".join(f"{k} {v}" for k, v in sorted(quarantined.items())) or "none",
            ]
        )
    headers = [
        "split",
        "clips",
        "frames",
        "duration",
        *(f"p{p} s" for p in PERCENTILES),
        "max s",
        "fps (clips)",
        "quarantined",
        "reasons",
    ]
    histogram = plots.histogram(durations, "clip duration (s)", "Clip durations per split")
    body = (
        table(headers, rows, text_columns=(0, 8, 10))
        + figure(histogram, "Clip duration histogram per split", "plot-durations")
        + quarantine_block(outputs, "manifest")
    )
    return Section("manifest", title, body)


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def pseudo_gloss_section(outputs: RunOutputs) -> Section:
    title = "Pseudo-glosses"
    if not outputs.ran("pseudo-gloss"):
        return not_run("pseudo-gloss", title, "no pseudo-glosses (prep run --stage pseudo-gloss)")
    summary = outputs.summary("pseudo-gloss")
    vocab_path = outputs.layout.stage_dir("pseudo-gloss") / "vocab.json"
    glosses = json.loads(vocab_path.read_text())["glosses"] if vocab_path.is_file() else []
    rows = []
    for split in outputs.splits("pseudo-gloss"):
        info = summary["splits"][split]
        lengths = [len(r["pseudo_glosses"] or []) for r in outputs.table("pseudo-gloss", split)]
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
    return Section("pseudo-gloss", title, body + quarantine_block(outputs, "pseudo-gloss"))


def shards_section(outputs: RunOutputs) -> Section:
    title = "Shards and features"
    if not outputs.ran("features"):
        return not_run("shards", title, "no shards (prep run --stage features)")
    body = ""
    for split in outputs.splits("features"):
        index = outputs.shard_index(split)
        if index is None:
            samples = outputs.summary("features").get("splits", {}).get(split, {}).get("samples")
            problem = (
                "every sample is quarantined: no shards"
                if samples == 0
                else f"<span class='bad'>no index.json in {esc(str(outputs.layout.shard_dir(split)))}</span>"
            )
            body += f"<h3>{esc(split)}</h3><p>{problem}</p>"
            continue
        shards = index["shardlist"]
        present = {p.name for p in shard_paths(outputs, split) if p.is_file()}
        rows = [
            [
                s["url"],
                Raw(esc(human_bytes(s["filesize"]))),
                s["nsamples"],
                Raw(f'<code title="{esc(s["sha256"])}">{esc(s["sha256"][:16])}…</code>'),
                "yes" if s["url"] in present else Raw('<span class="bad">missing</span>'),
            ]
            for s in shards
        ]
        total = sum(s["filesize"] for s in shards)
        body += (
            f"<h3>{esc(split)}: {index.get('samples', 0):,} samples in {len(shards)} shards, {esc(human_bytes(total))}</h3>"
            + table(["shard", "size", "samples", "sha256", "on disk"], rows, text_columns=(0, 3))
            + table(
                ["field", "samples", "bytes", "rows", "row shape", "mean", "std", "NaN", "inf"],
                _field_rows(shards),
            )
        )
    return Section("shards", title, body + quarantine_block(outputs, "features"))


def _field_rows(shards: list[dict]) -> list[list]:
    """Per field over a split's shards; moments pooled from each shard's mean, std and count."""
    fields = sorted({name for s in shards for name in s.get("fields", {})})
    rows = []
    for name in fields:
        stats = [s["fields"][name] for s in shards if name in s.get("fields", {})]
        row = [
            name,
            sum(x["samples"] for x in stats),
            Raw(esc(human_bytes(sum(x["bytes"] for x in stats)))),
        ]
        numeric = [x for x in stats if "mean" in x]
        if numeric:
            counts = np.array(
                [
                    x["rows"] * int(np.prod(x["shape_tail"] or [1])) - x["nan"] - x["inf"]
                    for x in numeric
                ],
                float,
            )
            means = np.array([x["mean"] for x in numeric])
            squares = np.array([x["std"] ** 2 + x["mean"] ** 2 for x in numeric])
            n = counts.sum()
            mean = float((counts * means).sum() / n) if n else 0.0
            std = float(max((counts * squares).sum() / n - mean**2, 0.0) ** 0.5) if n else 0.0
            nan, inf = sum(x["nan"] for x in numeric), sum(x["inf"] for x in numeric)
            row += [
                sum(x["rows"] for x in numeric),
                "×".join(map(str, numeric[0]["shape_tail"])) or "scalar",
                round(mean, 6),
                round(std, 6),
                _flag(nan),
                _flag(inf),
            ]
        else:
            row += [None] * 6
        rows.append(row)
    return rows


def _flag(count: int) -> object:
    return Raw(f'<span class="bad">{count:,}</span>') if count else 0


def provenance_section(outputs: RunOutputs) -> Section:
    """Per stage: versions, config hash and models at a glance; the full records folded."""
    rows, details = [], ""
    for stage in STAGES:
        if not outputs.ran(stage):
            rows.append([stage, "not run", None, None, None])
            continue
        summary = outputs.summary(stage)
        recorded = outputs.provenance(stage)
        rows.append(
            [
                stage,
                summary.get("stage_version"),
                recorded.get("prep_version"),
                summary.get("config_hash"),
                "; ".join(_models(stage, summary, recorded)) or "–",
            ]
        )
        kept = {k: v for k, v in summary.items() if k not in ("splits", "outputs")}
        details += pretty_json(
            {"summary": kept, "table_metadata": recorded, "runs": outputs.run_records(stage)},
            f"{stage}: summary, table metadata and run options",
        )
    body = table(
        ["stage", "version", "prep", "config hash", "models and sources"], rows, text_columns=(0, 4)
    )
    return Section("provenance", "Provenance", body + details)


def _models(stage: str, summary: dict, recorded: dict) -> list[str]:
    if stage == "manifest":
        return [
            f"dataset {recorded.get('dataset', '–')}",
            f"frames {recorded.get('frame_selection', {})}",
        ]
    if stage == "pseudo-gloss":
        pipelines = recorded.get("pipelines") or {}
        return [f"{k}: {v}" for k, v in sorted(pipelines.items())] + [
            str(recorded.get("prototype_source", ""))
        ]
    if stage == "hand-captions":
        captioner = summary.get("captioner") or recorded.get("captioner") or {}
        encoder = recorded.get("text_encoder") or {}
        found = [f"{k} {v}" for k, v in sorted(captioner.items())]
        if encoder:
            found.append(f"text encoder {encoder.get('model')} {encoder.get('revision', '')}")
        return found
    features = summary.get("features") or {}
    found = []
    for name, info in sorted(features.items()):
        model = info.get("model") or info.get("detector") or info.get("checkpoint") or ""
        found.append(f"{name}: {model} {info.get('revision', '')}".strip())
    return found
