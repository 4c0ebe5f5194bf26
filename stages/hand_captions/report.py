"""The hand-captions stage's part of ``prep report``: chunks and caption lengths per split,
and timelines (frames of a clip with each chunk's caption under its time span), so captions
that are empty, repetitive or cut at the wrong places are seen before they are trained on."""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.report import plots
from pipeline.report.data import RunOutputs
from pipeline.report.frames import FrameReader
from pipeline.report.html import Section, esc, figure, not_run, table
from pipeline.report.sections import quarantine_block

STAGE = "hand-captions"
CHUNKS = "chunks"  # the side table <split>.chunks.parquet: one row per captioned chunk
TIMELINE_FRAMES = 8
STRIP_HEIGHT = 90


def report_sections(outputs: RunOutputs, frames: FrameReader, clips: int) -> list[Section]:
    return [captions_section(outputs, frames, clips)]


def captions_section(outputs: RunOutputs, frames: FrameReader, clips: int) -> Section:
    title = "Hand captions"
    if not outputs.ran(STAGE):
        return not_run("captions", title, f"no hand captions (prep run --stage {STAGE})")
    rows, words, per_clip = [], {}, {}
    for split in outputs.splits(STAGE):
        chunks = outputs.table(STAGE, split, CHUNKS)
        words[split] = [len(c["text"].split()) for c in chunks]
        per_clip[split] = list(Counter(c["id"] for c in chunks).values())
        models = sorted({f"{c.get('backend')} {c.get('model')}" for c in chunks})
        rows.append(
            [
                split,
                len(per_clip[split]),
                len(chunks),
                float(np.mean(per_clip[split])) if chunks else None,
                *(float(np.percentile(words[split], p)) if chunks else None for p in (50, 95)),
                max(words[split], default=None),
                ", ".join(models),
            ]
        )
    body = _models(outputs.summary(STAGE), outputs.provenance(STAGE)) + table(
        [
            "split",
            "clips",
            "chunks",
            "chunks per clip",
            "words p50",
            "words p95",
            "words max",
            "captioner",
        ],
        rows,
        text_columns=(0, 7),
    )
    body += truncation(outputs)
    body += figure(
        plots.histogram(
            words, "words per chunk caption", "Caption length per split", bins=25, ylabel="chunks"
        ),
        "Caption length (words per chunk) per split",
        "plot-caption-words",
    )
    body += figure(
        plots.histogram(per_clip, "chunks per clip", "Chunks per clip", bins=15),
        "Chunks per clip per split",
        "plot-caption-chunks",
    )
    body += "<h3>Timelines</h3>" + "".join(
        timeline(outputs, frames, split, sample_id, number)
        for number, (split, sample_id) in enumerate(timeline_clips(outputs, clips))
    )
    return Section("captions", title, body + quarantine_block(outputs, STAGE))


def _models(summary: dict, recorded: dict) -> str:
    """The captioner and the text encoder, with their settings: what the captions depend on."""
    captioner = summary.get("captioner") or recorded.get("captioner") or {}
    encoder = recorded.get("text_encoder") or {}
    found = [f"{k} {v}" for k, v in sorted(captioner.items())]
    if encoder:
        found.append(f"text encoder {encoder.get('model')} {encoder.get('revision', '')}")
    return f"<p>Captioner: {esc('; '.join(found) or '–')}.</p>"


def truncation(outputs: RunOutputs) -> str:
    """What the text encoder cut, per split: a description longer than the encoder takes is
    embedded from its beginning only, so its end never reaches training; said here, not hidden."""
    encoder = outputs.provenance(STAGE).get("text_encoder") or {}
    if not encoder:
        return "<p>Caption embeddings: none (--text-encoder none).</p>"
    limit = encoder.get("max_tokens")
    rows = []
    for split in outputs.splits(STAGE):
        samples = [r for r in outputs.table(STAGE, split) if r.get("caption_tokens") is not None]
        chunks = [c for c in outputs.table(STAGE, split, CHUNKS) if c.get("embedded_tokens")]
        cut = [r["caption_tokens_cut"] for r in samples]
        tokens = [r["caption_tokens"] for r in samples]
        rows.append(
            [
                split,
                len(samples),
                float(np.percentile(tokens, 95)) if tokens else None,
                max(tokens, default=None),
                sum(1 for n in cut if n > 0),
                sum(cut),
                max(cut, default=None),
                sum(1 for c in chunks if c["embedded_tokens_cut"] > 0),
            ]
        )
    head = (
        f"<h3>Embedding truncation</h3><p>Text encoder {esc(str(encoder.get('model')))} takes "
        f"{esc(str(limit))} tokens; tokens past that are cut from the end of a text before it "
        "is embedded (whole descriptions in caption_emb, each chunk caption in "
        "caption_chunks_emb).</p>"
    )
    return head + table(
        [
            "split",
            "clips embedded",
            "tokens p95",
            "tokens max",
            "descriptions cut",
            "tokens cut",
            "most cut from one",
            "chunk captions cut",
        ],
        rows,
    )


def timeline_clips(outputs: RunOutputs, count: int) -> list[tuple[str, str]]:
    """The clips with the most chunks (ties: split order, then table order)."""
    ranked = []
    for order, split in enumerate(outputs.splits(STAGE)):
        chunks = Counter(c["id"] for c in outputs.table(STAGE, split, CHUNKS))
        ranked += [
            (-n, order, position, split, sample_id)
            for position, (sample_id, n) in enumerate(chunks.items())
        ]
    return [(split, sample_id) for *_rank, split, sample_id in sorted(ranked)[:count]]


def timeline(
    outputs: RunOutputs, frames: FrameReader, split: str, sample_id: str, number: int
) -> str:
    """Frames spread over the clip, and under them each chunk's caption placed at its time
    span; overlapping chunks take separate lanes."""
    chunks = [c for c in outputs.table(STAGE, split, CHUNKS) if c["id"] == sample_id]
    row = outputs.manifest_rows.get((split, sample_id))
    duration = (
        (row["num_frames"] / row["fps"]) if row and row["fps"] else max(c["end_s"] for c in chunks)
    )
    duration = max(duration, 1e-6)
    head = f"<h4>{esc(split)}/{esc(sample_id)} ({duration:.2f} s, {len(chunks)} chunks)</h4>"
    strip = "<p class='note'>no frames: the clip is not in the manifest</p>"
    if row:
        count = min(TIMELINE_FRAMES, row["num_frames"])
        numbers = [int((k + 0.5) * row["num_frames"] / count) for k in range(count)]
        images, origin = frames.read(split, sample_id, numbers)
        if images:
            uri = plots.image_uri(
                plots.tile_row([plots.fit_height(i, STRIP_HEIGHT) for i in images], gap=0)
            )
            strip = (
                f'<img id="timeline-{number}" src="{uri}" alt="frames of {esc(sample_id)}">'
                f"<p class='note'>frames {', '.join(map(str, numbers))} ({esc(origin)})</p>"
            )
        else:
            strip = f"<p class='note'>no frames ({esc(origin)})</p>"
    cells, lane_ends = [], []
    for c in sorted(chunks, key=lambda c: (c["start_s"], c["chunk_index"])):
        lane = next(
            (i for i, end in enumerate(lane_ends) if end <= c["start_s"] + 1e-9), len(lane_ends)
        )
        lane_ends[lane : lane + 1] = [c["end_s"]]
        first = min(999, round(1000 * c["start_s"] / duration)) + 1
        last = max(first + 1, min(1000, round(1000 * c["end_s"] / duration)) + 1)
        cells.append(
            f'<div class="chunk" style="grid-column:{first}/{last};grid-row:{lane + 1}">'
            f"<b>{c['start_s']:.2f}–{c['end_s']:.2f} s</b>{esc(c['text'])}</div>"
        )
    return f'<div class="timeline">{head}{strip}<div class="chunks">{"".join(cells)}</div></div>'
