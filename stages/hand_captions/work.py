"""One unit's captioning: clips streamed chunk by chunk, chunks from several clips batched into
one model call, each finished batch journaled so a crash loses at most the batch in flight."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from pipeline.journal import UnitJournal
from pipeline.video import ChunkInfo, Clip, DecodeError, FrameSelection, iter_clip
from stages.hand_captions.captioners import Caption, ChunkRequest
from stages.hand_captions.chunking import Chunk


class ClipUnreadable(Exception):
    """The clip's frames could not be decoded (the clip is quarantined, the unit goes on)."""

    @classmethod
    def because(cls, exc: BaseException) -> ClipUnreadable:
        return cls(" ".join(str(exc).split()) or type(exc).__name__)


DECODE_BATCH = (
    16  # frames decoded at a time; memory per clip stays bounded by chunk, not clip, length
)


@dataclass
class ClipWork:
    """A clip's chunks and the frames the captioner is shown of each."""

    position: int
    item: dict[str, Any]
    chunks: list[Chunk]
    picks: list[list[int]] = field(default_factory=list)


def chunk_requests(
    work: ClipWork, source: Any, captioner: Any, detect: Callable | None
) -> Iterator[ChunkRequest]:
    """Yield each chunk as soon as its last frame is decoded; what no later chunk needs is dropped."""
    wanted = {i for pick in work.picks for i in pick} if captioner.needs_frames else set()
    frames: dict[int, np.ndarray] = {}
    hands, hands_from = None, 0  # hand rows of frames hands_from, hands_from + 1, ...
    decoded, ready = 0, 0
    for clip in decoded_batches(source):
        if captioner.needs_hands:
            try:  # a missing keypoints file is the clip's problem; any other detector error is a bug
                rows = detect(clip.frames, ChunkInfo(work.position, work.item, clip.indices))
            except DecodeError as exc:
                raise ClipUnreadable.because(exc) from exc
            hands = rows if hands is None else np.concatenate([hands, rows])
        frames.update(
            (int(i), frame) for i, frame in zip(clip.indices, clip.frames) if int(i) in wanted
        )
        decoded += len(clip.frames)
        while ready < len(work.chunks) and work.chunks[ready].end_frame <= decoded:
            chunk, pick = work.chunks[ready], work.picks[ready]
            request = ChunkRequest(
                (work.item["id"], chunk.index),
                pick,
                float(work.item["fps"]),
                source.width,
                source.height,
            )
            if captioner.needs_frames:
                request.frames = np.stack([frames[i] for i in pick])
            if hands is not None:
                request.hands = hands[chunk.start_frame - hands_from : chunk.end_frame - hands_from]
            yield request
            ready += 1
            keep_from = work.chunks[ready].start_frame if ready < len(work.chunks) else decoded
            frames = {i: f for i, f in frames.items() if i >= keep_from}
            if hands is not None:
                hands, hands_from = hands[keep_from - hands_from :], keep_from
    if ready < len(work.chunks):
        raise ClipUnreadable(f"decoded {decoded} of {work.item['num_frames']} frames")


def decoded_batches(source: Any) -> Iterator[Clip]:
    """The clip's frames in batches; a decoding failure becomes :class:`ClipUnreadable`. Only
    decoding is guarded: the hand detector's and captioner's own errors are bugs, not bad data,
    and fail the unit with their traceback."""
    batches = iter_clip(source, FrameSelection(), DECODE_BATCH)
    while True:
        try:
            clip = next(batches)
        except StopIteration:
            return
        except (DecodeError, OSError) as exc:
            raise ClipUnreadable.because(exc) from exc
        yield clip


def journaled_keys(journal: UnitJournal, kind: str) -> dict:
    return {
        tuple(r["key"]) if kind == "chunk" else r["key"]: r
        for r in journal.records
        if r["kind"] == kind
    }


class BatchedCaptioner:
    """Collects chunk requests across clips and captions them ``batch_size`` at a time."""

    def __init__(self, captioner: Any, batch_size: int, journal: UnitJournal) -> None:
        self.captioner, self.batch_size, self.journal = captioner, max(1, batch_size), journal
        self.waiting: list[ChunkRequest] = []
        self.generated_tokens = self.captioned = 0

    def add(self, request: ChunkRequest) -> None:
        self.waiting.append(request)
        if len(self.waiting) >= self.batch_size:
            self.flush()

    def drop(self, sample_id: str) -> None:
        """Forget a quarantined clip's chunks that are still waiting for a batch."""
        self.waiting = [r for r in self.waiting if r.key[0] != sample_id]

    def flush(self) -> None:
        if not self.waiting:
            return
        captions: list[Caption] = self.captioner(self.waiting)
        self.generated_tokens += sum(c.tokens for c in captions)
        self.captioned += len(captions)
        self.journal.append(
            {"kind": "chunk", "key": list(r.key), "text": c.text, "tokens": c.tokens}
            for r, c in zip(self.waiting, captions)
        )
        self.waiting = []
