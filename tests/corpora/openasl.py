"""A small OpenASL release in its official layout: ``data/openasl-v1.0.tsv``,
``data/bbox-v1.0.json``, the full videos ``prep/download.py`` saves (``raw-video/{yid}.mp4``) and
the clips ``prep/crop_video.py`` makes of them (``video-clip/{vid}.mp4``: cut, cropped to the
signer box, resized, 25 fps), with synthetic signing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2

from pipeline import synthetic

RAW_FPS, CLIP_FPS = 30.0, 25.0
RAW_SIZE, CLIP_SIZE = (48, 32), (24, 24)
HEADER = "vid\tyid\tstart\tend\traw-text\ttokenized-text\tgloss\tsplit"
VIDEOS = {"1nFdgokPwBw": 3.0, "-Hx_9kq2LmA": 2.5}  # YouTube id -> seconds
BOX = [0.25, 0.125, 0.75, 0.875]  # x0, y0, x1, y1 as fractions of width and height


def clock(seconds: float) -> str:
    """Seconds as the release writes times: ``HH:MM:SS.mmm``."""
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"


@dataclass(frozen=True)
class Row:
    """One row of the annotation file; ``split`` is the release's name (train, valid, test)."""

    yid: str
    start: float
    end: float
    text: str
    split: str

    @property
    def vid(self) -> str:
        return f"{self.yid}-{clock(self.start)}-{clock(self.end)}"

    @property
    def frames(self) -> tuple[int, int]:
        """[first, stop) frame numbers of the sentence in its full video."""
        return round(self.start * RAW_FPS), round(self.end * RAW_FPS)

    def line(self) -> str:
        tokenized = " ".join(re.findall(r"\w+|[^\w\s]", self.text.lower()))
        fields = (self.vid, self.yid, clock(self.start), clock(self.end), self.text, tokenized)
        return "\t".join((*fields, "", self.split))


ROWS = [
    Row("1nFdgokPwBw", 0.4, 1.6, "Are you all bored being stuck at home?", "train"),
    Row("1nFdgokPwBw", 1.8, 2.8, "There might be some songs you know.", "valid"),
    Row("-Hx_9kq2LmA", 0.2, 1.2, "Join today!", "test"),
    Row("-Hx_9kq2LmA", 1.4, 2.2, 'She said "thank you" to the Jr. NAD chapters.', "train"),
]


def write_openasl(out: Path, clips: bool = True, videos: bool = True) -> Path:
    """The release under ``out/OpenASL`` (its folder is a valid ``--root``)."""
    root = out / "OpenASL"
    for folder in ("data", "raw-video", "video-clip"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for yid, seconds in VIDEOS.items():
        frames = list(synthetic.render_frames(round(seconds * RAW_FPS), *RAW_SIZE, yid))
        if videos:
            synthetic.write_video(
                root / "raw-video" / f"{yid}.mp4", iter(frames), RAW_FPS, RAW_SIZE
            )
        for row in (r for r in ROWS if clips and r.yid == yid):
            first, stop = row.frames
            cropped = (_crop(frame) for frame in frames[first:stop])
            synthetic.write_video(
                root / "video-clip" / f"{row.vid}.mp4", cropped, CLIP_FPS, CLIP_SIZE
            )
    lines = [HEADER] + [row.line() for row in ROWS]
    (root / "data" / "openasl-v1.0.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    boxes = {row.vid: BOX for row in ROWS}
    (root / "data" / "bbox-v1.0.json").write_text(json.dumps(boxes), encoding="utf-8")
    return root


def _crop(frame):
    """The signer box cut out and resized, as crop_video.py makes a clip (without squaring)."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (round(v * s) for v, s in zip(BOX, (width, height, width, height)))
    return cv2.resize(frame[y0:y1, x0:x1], CLIP_SIZE, interpolation=cv2.INTER_AREA)
