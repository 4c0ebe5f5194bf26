"""Decode clips ahead of the model in threads, handing frames over in clip order.

Thread ``i`` decodes clips ``i, i+W, i+2W, ...`` into its own small queue, so the consumer
reads clips strictly in order (deterministic batches, hence byte-identical outputs) while
the next ``W-1`` clips are already being decoded. Memory is bounded by
``workers x lookahead x chunk_frames`` frames whatever the clip length, and one read's frames
by :data:`DECODE_BYTES_AT_ONCE` whatever the frame size (4K video). PyAV, OpenCV and
torch release the GIL, so threads overlap decoding with inference.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from pipeline.video import ChunkInfo, DecodeError, FrameSelection, FrameSource, iter_clip


@dataclass
class FrameChunk:
    """Consecutive selected frames of one clip, with whatever the host-side hooks made of them."""

    position: int
    indices: np.ndarray
    prepared: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClipEnd:
    """The last message for a clip: ``error`` is a one-line reason when it could not be decoded."""

    position: int
    num_frames: int = 0
    error: str | None = None
    crash: BaseException | None = None  # a bug, not bad data: re-raised in the consumer


Hook = Callable[[np.ndarray, ChunkInfo], Any]  # (frames, info) -> prepared


DECODE_BYTES_AT_ONCE = 64 * 2**20  # one read's frames per decode thread: 16 small frames, 2 of 4K


class Unreadable(Exception):
    """A clip's frames could not be decoded: its one-line reason becomes a quarantine row."""


def _prepared(hooks: dict[str, Hook], frames: np.ndarray, info: ChunkInfo) -> dict[str, Any]:
    """Every hook's result. A hook says a clip's input is unusable (say, its keypoints file is
    missing) by raising :class:`DecodeError`; anything else it raises is a bug."""
    try:
        return {name: hook(frames, info) for name, hook in hooks.items()}
    except DecodeError as exc:
        raise Unreadable(" ".join(str(exc).split())[:300] or type(exc).__name__) from exc


def _decoded(
    open_clip: Callable, clip: Any, chunk_frames: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frames, indices) batches of one clip. Only opening and decoding are guarded: an error
    from a hook (a model's preprocessing, MediaPipe, a crop) is a bug and must stay one."""
    source = None
    try:
        source, selection = open_clip(clip)
        frame_bytes = 3 * max(1, source.width * source.height)
        batches = iter_clip(
            source, selection, max(1, min(chunk_frames, DECODE_BYTES_AT_ONCE // frame_bytes))
        )
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch.frames, batch.indices
    except (DecodeError, OSError) as exc:
        raise Unreadable(" ".join(str(exc).split())[:300] or type(exc).__name__) from exc
    finally:  # now, not when the collector finds it: its file stays open for the next segment
        if hasattr(source, "close"):
            source.close()


def decoded_chunks(
    clips: Sequence[Any],
    open_clip: Callable[[Any], tuple[FrameSource, FrameSelection]],
    hooks: dict[str, Hook],
    *,
    workers: int = 2,
    chunk_frames: int = 16,
    lookahead: int = 2,
) -> Iterator[FrameChunk | ClipEnd]:
    """For each clip in order: its chunks, then a :class:`ClipEnd`."""
    workers = max(1, min(workers, len(clips)))
    queues = [queue.Queue(maxsize=lookahead) for _ in range(workers)]
    stop = threading.Event()

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode_share(worker: int) -> None:
        for position in range(worker, len(clips), workers):
            count, error, crash = 0, None, None
            try:
                for frames, indices in _decoded(open_clip, clips[position], chunk_frames):
                    prepared = _prepared(
                        hooks, frames, ChunkInfo(position, clips[position], indices)
                    )
                    count += len(indices)
                    if not put(queues[worker], FrameChunk(position, indices, prepared)):
                        return
            except Unreadable as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a hook's bug, handed to the consumer, which raises it
                crash = exc
            if not put(queues[worker], ClipEnd(position, count, error, crash)):
                return

    threads = [
        threading.Thread(target=decode_share, args=(w,), daemon=True, name=f"prep-clip-{w}")
        for w in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        for position in range(len(clips)):
            source = queues[position % workers]
            while True:
                item = source.get()
                if isinstance(item, ClipEnd) and item.crash is not None:
                    raise item.crash
                yield item
                if isinstance(item, ClipEnd):
                    break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
