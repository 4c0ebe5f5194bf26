"""The features stage's part of ``prep report``: hand coverage and crops
(:mod:`stages.features.report_hands`), then the shards: per split each tar with its size and
checksum and whether it is on disk, and per field the pooled statistics the index recorded
(mean, std, NaN, inf), so broken or degenerate features show before a training run reads them.

The stage writes no per-split tables; its provenance is in each split's shard index."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.report.data import RunOutputs, shard_paths
from pipeline.report.frames import FrameReader
from pipeline.report.html import Raw, Section, esc, human_bytes, not_run, table
from pipeline.report.sections import quarantine_block
from stages.features.report_hands import hands_section

STAGE = "features"


def report_sections(outputs: RunOutputs, frames: FrameReader, clips: int) -> list[Section]:
    return [hands_section(outputs, frames, clips), shards_section(outputs)]


def report_provenance(outputs: RunOutputs) -> dict[str, Any]:
    """The provenance in the first split's shard index (every split records the same)."""
    for split in outputs.splits(STAGE):
        index = outputs.shard_index(split)
        if index:
            return index.get("provenance", {})
    return {}


def shards_section(outputs: RunOutputs) -> Section:
    title = "Shards and features"
    if not outputs.ran(STAGE):
        return not_run("shards", title, f"no shards (prep run --stage {STAGE})")
    body = _models(outputs.summary(STAGE))
    for split in outputs.splits(STAGE):
        index = outputs.shard_index(split)
        if index is None:
            samples = outputs.summary(STAGE).get("splits", {}).get(split, {}).get("samples")
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
    return Section("shards", title, body + quarantine_block(outputs, STAGE))


def _models(summary: dict) -> str:
    """Which model, detector or checkpoint (and revision) made each feature."""
    found = []
    for name, info in sorted((summary.get("features") or {}).items()):
        model = info.get("model") or info.get("detector") or info.get("checkpoint") or ""
        found.append(f"{name}: {model} {info.get('revision', '')}".strip())
    return f"<p>Features: {esc('; '.join(found) or '–')}.</p>"


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
