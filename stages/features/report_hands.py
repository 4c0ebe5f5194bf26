"""The hands part of the features stage's report: per split how many frames have 0, 1 or 2
hands and which detector found them, the clips with the lowest coverage, and a contact sheet
of hand crops with their landmarks, so a detector that misses or swaps hands is seen at once.

Reads ``hands.npy`` from the shards; its row layout comes from :mod:`stages.hands.detect`,
which writes it, so the two cannot drift apart."""

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
from pipeline.shards import decode_npy
from stages.hands.rows import (
    BOX,
    LANDMARKS,
    LANDMARKS_PX,
    PRESENT,
    SLOTS,
    SOURCE,
    SOURCE_HANDS,
    SOURCE_KEYPOINTS,
    SOURCE_POSE,
)

STAGE = "features"
HANDS_FIELD = "hands.npy"  # float32 [T, 2, COLUMNS]: slot 0 the signer's left hand, 1 the right
SOURCE_NAMES = {
    SOURCE_HANDS: "MediaPipe Hands",
    SOURCE_POSE: "pose fallback",
    SOURCE_KEYPOINTS: "keypoints file",
}
LOWEST_COVERAGE = 10
SHEET_FRAMES = 6
TILE = 96
CROP_SCALE = 2.0  # HaMeR's demo enlarges the box by 2.0 too


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
            for _key, fields in iter_shard_members(shard, lambda _k, f: f in ("json", HANDS_FIELD)):
                if HANDS_FIELD not in fields:
                    continue
                meta, hands = json.loads(fields["json"]), decode_npy(fields[HANDS_FIELD])
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
    if not outputs.ran(STAGE):
        return not_run("hands", title, f"no shards (prep run --stage {STAGE} --features ...,hands)")
    splits = [s for s in outputs.splits(STAGE) if has_field(outputs, s, HANDS_FIELD)]
    if not splits:
        return not_run(
            "hands", title, f"the {STAGE} stage ran without hands (--features ...,hands)"
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
            plots.tile_row(
                [hand_tile(image, clip.hands[p, slot]) for slot in range(len(SLOTS))], gap=2
            )
            for image, p in zip(images, positions)
        ]
        caption = (
            f"{clip.split}/{clip.sample_id}: frames {', '.join(map(str, numbers))}; each pair is the "
            f"signer's {' | '.join(SLOTS)} hand ({origin})"
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
    points = row[LANDMARKS_PX].reshape(LANDMARKS, 3)[:, :2]
    if np.abs(points).sum() > 0:
        for x, y in points * scale + affine[:, 2]:
            cv2.circle(tile, (round(x), round(y)), 2, (255, 40, 40), -1, lineType=cv2.LINE_AA)
    return tile
