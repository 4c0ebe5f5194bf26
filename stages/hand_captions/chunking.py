"""Cut a clip into the short chunks a captioner describes (BeyondGloss: 16 frames).

Chunks start every ``stride`` frames (``stride == length``: no overlap). A tail shorter than a
chunk is merged into the last chunk, so with the defaults the last chunk has 16-31 frames, and
a clip of ``length`` frames or fewer is one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Chunk:
    index: int
    start_frame: int  # first frame, inclusive
    end_frame: int  # last frame, exclusive
    start_s: float
    end_s: float


def chunk_spans(
    num_frames: int, length: int = 16, stride: int | None = None
) -> list[tuple[int, int]]:
    stride = stride or length
    if length < 1 or stride < 1:
        raise ValueError(f"chunk length and stride must be >= 1, got {length}, {stride}")
    if num_frames <= length:
        return [(0, num_frames)] if num_frames > 0 else []
    starts = list(range(0, num_frames - length + 1, stride))
    spans = [(s, s + length) for s in starts]
    if spans[-1][1] < num_frames:  # the tail joins the last chunk
        spans[-1] = (spans[-1][0], num_frames)
    return spans


def chunks_of(
    num_frames: int,
    fps: float,
    length: int = 16,
    stride: int | None = None,
    times: Sequence[float] | None = None,
) -> list[Chunk]:
    """Chunks with their seconds: from the clip's real frame ``times`` when given (a variable
    frame rate), else from ``fps``. A chunk ends where the frame after its last one starts; the
    clip's last frame lasts as long as the one before it."""
    if times is None:
        edges = [n / fps for n in range(num_frames + 1)]
    else:
        last = times[num_frames - 1] - times[num_frames - 2] if num_frames > 1 else 1 / fps
        edges = list(times[:num_frames]) + [times[num_frames - 1] + last if num_frames else 0.0]
    return [
        Chunk(i, a, b, round(edges[a], 3), round(edges[b], 3))
        for i, (a, b) in enumerate(chunk_spans(num_frames, length, stride))
    ]


CAPTION_JOINS = ("timed", "plain")


def join_captions(chunks: list[Chunk], texts: list[str], how: str = "timed") -> str:
    """The clip's description: its chunk captions in time order (chunk order).

    ``timed``: each piece behind its time span, ``[0.00–0.54 s] ...``, separated by a space.
    ``plain``: BeyondGloss's paragraph, the pieces concatenated with nothing between them
    (elsobhano/BeyondGloss ``sign_video_descriptor/refine.py`` l.87, ``"".join`` over the
    ``chunk_<i>`` values in the order ``describe_segments.py`` l.163-166 wrote them, each
    ``.strip()``-ed at l.117), so "...to the face.The right hand..." is what it refines.
    """
    if how == "plain":
        return "".join(t.strip() for t in texts)
    if how != "timed":
        raise ValueError(f"caption join {how!r}: expected one of {', '.join(CAPTION_JOINS)}")
    return " ".join(f"[{c.start_s:.2f}–{c.end_s:.2f} s] {t}" for c, t in zip(chunks, texts))
