"""Report sections that show the video: hand coverage with a contact sheet of hand crops
(from ``hands.npy`` in the shards), and caption timelines (frames with each chunk's caption
under its time span)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.report import plots
from pipeline.report.data import RunOutputs, has_field, iter_shard_members, shard_paths
from pipeline.report.frames import FrameReader
from pipeline.report.html import Section, esc, figure, not_run, percent, table
from pipeline.report.sections import quarantine_block
from pipeline.shards import decode_npy

# hands.npy: float32 [T, 2, 112], slot 0 the signer's left hand, slot 1 the right; per slot
# present, source, score, box x0 y0 x1 y1 (pixels), 21 landmarks (x, y, z) in pixels, 21 (x, y)
# normalised (stages/hands/detect.py; pipeline does not import stages, so the layout is restated)
PRESENT, SOURCE = 0, 1
BOX = slice(3, 7)
LANDMARKS_PX = slice(7, 7 + 21 * 3)
SLOTS = ("left", "right")
SOURCE_NAMES = {1: "MediaPipe Hands", 2: "pose fallback", 3: "keypoints file"}
LOWEST_COVERAGE = 10
SHEET_FRAMES = 6
TILE = 96
CROP_SCALE = 2.0  # HaMeR's demo enlarges the box by 2.0 too
TIMELINE_FRAMES = 8
STRIP_HEIGHT = 90


@dataclass
class ClipHands:
    split: str
    sample_id: str
    frames: int
    with_hands: tuple[int, int, int]  # frames with 0, 1, 2 hands
    sources: Counter = field(default_factory=Counter)
    frame_indices: list[int] = field(
        default_factory=list
    )  # these two only for the contact-sheet clips
    hands: np.ndarray | None = None

    def share(self, count: int) -> float:
        return self.with_hands[count] / self.frames if self.frames else 0.0

    @property
    def coverage(self) -> float:
        """Share of frames with at least one hand."""
        return 1.0 - self.share(0)


def scan_hands(outputs: RunOutputs, splits: list[str], keep: int) -> list[ClipHands]:
    """Per clip hand counts from every shard; the first ``keep`` clips with hands keep their rows."""
    clips, kept = [], 0
    for split in splits:
        for shard in shard_paths(outputs, split):
            for _key, fields in iter_shard_members(shard, lambda _k, f: f in ("json", "hands.npy")):
                if "hands.npy" not in fields:
                    continue
                meta, hands = json.loads(fields["json"]), decode_npy(fields["hands.npy"])
                present = hands[:, :, PRESENT] > 0
                per_frame = present.sum(axis=1)
                clip = ClipHands(
                    split,
                    meta["id"],
                    len(hands),
                    tuple(int((per_frame == n).sum()) for n in range(3)),
                    Counter(
                        SOURCE_NAMES.get(int(s), str(int(s))) for s in hands[:, :, SOURCE][present]
                    ),
                )
                if kept < keep and present.any():
                    clip.hands, clip.frame_indices, kept = (
                        np.array(hands),
                        meta["frame_indices"],
                        kept + 1,
                    )
                clips.append(clip)
    return clips


def hands_section(outputs: RunOutputs, frames: FrameReader, clips: int) -> Section:
    title = "Hands"
    if not outputs.ran("features"):
        return not_run("hands", title, "no shards (prep run --stage features --features ...,hands)")
    splits = [s for s in outputs.splits("features") if has_field(outputs, s, "hands.npy")]
    if not splits:
        return not_run(
            "hands", title, "the features stage ran without hands (--features ...,hands)"
        )
    scanned = scan_hands(outputs, splits, clips)
    rows = []
    for split in splits:
        mine = [c for c in scanned if c.split == split]
        total = sum(c.frames for c in mine)
        counts = [sum(c.with_hands[n] for c in mine) for n in range(3)]
        sources = sum((c.sources for c in mine), Counter())
        rows.append(
            [
                split,
                len(mine),
                total,
                *(percent(n / total) if total else None for n in counts),
                ", ".join(f"{k} {v:,}" for k, v in sorted(sources.items())) or "none",
            ]
        )
    body = table(
        ["split", "clips", "frames", "0 hands", "1 hand", "2 hands", "hand sources (hand-frames)"],
        rows,
        text_columns=(0, 6),
    )
    shares = {f"{n} hand{'s' if n != 1 else ''}": [c.share(n) for c in scanned] for n in range(3)}
    body += figure(
        plots.histogram(
            shares,
            "share of the clip's frames",
            "Frames with 0, 1 and 2 hands per clip",
            bins=20,
            value_range=(0.0, 1.0),
        ),
        "Per clip: share of frames with 0, 1 and 2 hands (all splits)",
        "plot-hand-shares",
    )
    lowest = sorted(scanned, key=lambda c: (c.coverage, c.split, c.sample_id))[:LOWEST_COVERAGE]
    body += "<h3>Lowest hand coverage</h3>" + table(
        ["split", "id", "frames", "with a hand", "0 hands", "1 hand", "2 hands"],
        [
            [
                c.split,
                c.sample_id,
                c.frames,
                *map(percent, (c.coverage, c.share(0), c.share(1), c.share(2))),
            ]
            for c in lowest
        ],
        text_columns=(0, 1),
    )
    body += "<h3>Hand crops</h3>" + contact_sheet(
        [c for c in scanned if c.hands is not None], frames
    )
    return Section("hands", title, body)


def contact_sheet(clips: list[ClipHands], frames: FrameReader) -> str:
    """One strip per clip: (left, right) crop pairs from frames where a hand was found."""
    if not clips:
        return "<p>No clip has a detected hand.</p>"
    out = []
    for number, clip in enumerate(clips):
        present = np.flatnonzero((clip.hands[:, :, PRESENT] > 0).any(axis=1))
        positions = present[
            np.round(np.linspace(0, len(present) - 1, min(SHEET_FRAMES, len(present)))).astype(int)
        ]
        numbers = [int(clip.frame_indices[p]) for p in positions]
        images, origin = frames.read(clip.split, clip.sample_id, numbers)
        if not images:
            out.append(f"<p class='note'>{esc(clip.sample_id)}: no frames ({esc(origin)})</p>")
            continue
        pairs = [
            plots.tile_row([hand_tile(image, clip.hands[p, slot]) for slot in range(2)], gap=2)
            for image, p in zip(images, positions)
        ]
        caption = (
            f"{clip.split}/{clip.sample_id}: frames {', '.join(map(str, numbers))}; each pair is the "
            f"signer's left | right hand ({origin})"
        )
        out.append(
            figure(plots.image_uri(plots.tile_row(pairs, gap=12)), caption, f"hand-crops-{number}")
        )
    return "".join(out)


def hand_tile(image: np.ndarray, row: np.ndarray) -> np.ndarray:
    """The hand's box enlarged and squared, at TILE² with its landmarks; grey when absent."""
    if row[PRESENT] <= 0:
        return np.full((TILE, TILE, 3), 200, np.uint8)
    x0, y0, x1, y1 = row[BOX]
    half = max(x1 - x0, y1 - y0, 4.0) * CROP_SCALE / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = TILE / (2 * half)
    affine = np.array(
        [[scale, 0, TILE / 2 - cx * scale], [0, scale, TILE / 2 - cy * scale]], np.float32
    )
    tile = cv2.warpAffine(
        image, affine, (TILE, TILE), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128)
    )
    points = row[LANDMARKS_PX].reshape(21, 3)[:, :2]
    if np.abs(points).sum() > 0:
        for x, y in points * scale + affine[:, 2]:
            cv2.circle(tile, (round(x), round(y)), 2, (255, 40, 40), -1, lineType=cv2.LINE_AA)
    return tile


def captions_section(outputs: RunOutputs, frames: FrameReader, clips: int) -> Section:
    title = "Hand captions"
    if not outputs.ran("hand-captions"):
        return not_run("captions", title, "no hand captions (prep run --stage hand-captions)")
    rows, words, per_clip = [], {}, {}
    for split in outputs.splits("hand-captions"):
        chunks = outputs.table("hand-captions", split, ".chunks")
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
    body = table(
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
    return Section("captions", title, body + quarantine_block(outputs, "hand-captions"))


def timeline_clips(outputs: RunOutputs, count: int) -> list[tuple[str, str]]:
    """The clips with the most chunks (ties: split order, then table order)."""
    ranked = []
    for order, split in enumerate(outputs.splits("hand-captions")):
        chunks = Counter(c["id"] for c in outputs.table("hand-captions", split, ".chunks"))
        ranked += [
            (-n, order, position, split, sample_id)
            for position, (sample_id, n) in enumerate(chunks.items())
        ]
    return [(split, sample_id) for *_rank, split, sample_id in sorted(ranked)[:count]]


def timeline(
    outputs: RunOutputs, frames: FrameReader, split: str, sample_id: str, number: int
) -> str:
    chunks = [c for c in outputs.table("hand-captions", split, ".chunks") if c["id"] == sample_id]
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
