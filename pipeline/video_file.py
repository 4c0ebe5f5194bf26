"""Video files read by presentation time: a frame's identity is its place among the frames the
stream presents, checked against its timestamp, never assumed from a frame rate.

One demux pass (no decoding) indexes the presented frames (:func:`index_stream`): packets an
edit list discards are left out, timestamps that restart or jump back (MPEG-TS files joined byte
for byte) are unwrapped onto one time line, and variable frame rates keep their real times.
Reading decodes forward with PyAV (FFmpeg, with dav1d for AV1) and hands over exactly the
frames asked for, seeking to a keyframe only where the timestamps are monotonic. A stream that
does not deliver the frames its index promises raises :class:`DecodeError`, never pads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from pipeline.video_common import DecodeError, first_line, segment_slice

SEEK_MIN_SKIP = 48  # frames the decoder would otherwise decode for nothing before a seek pays


class UnsupportedCodec(DecodeError):
    """The file's video codec has no decoder here; the message names the codec."""


@dataclass(frozen=True)
class StreamIndex:
    """The presented frames of a file's first video stream, in presentation order."""

    pts: np.ndarray  # int64: each frame's own timestamp, in time_base units
    times: np.ndarray  # float64: seconds from the first presented frame, one monotonic time line
    keyframes: np.ndarray  # bool: a decoder can start at this frame
    time_base: Fraction
    codec: str
    width: int
    height: int
    average_rate: Fraction | None
    restarts: int  # times the timestamps went back or jumped far ahead (unwrapped in ``times``)

    @property
    def timing(self) -> str:
        """``constant``, ``variable`` or ``restarts``: what the manifest records about the clock."""
        if self.restarts:
            return "restarts"
        steps = np.diff(self.pts)
        return "constant" if len(steps) == 0 or steps.max() - steps.min() <= 1 else "variable"

    @property
    def fps(self) -> float:
        if self.average_rate:
            return float(self.average_rate)
        span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / span if span > 0 else 0.0


def _open(path: Path, threads: int = 1):
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's chatter; errors still raise
    if not path.is_file():
        raise DecodeError(f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise DecodeError(f"empty file: {path.name}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:  # FFmpeg's word on this file
        raise DecodeError(f"unreadable video {path.name}: {first_line(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise DecodeError(f"unreadable video {path.name}: no video stream")
    stream = container.streams.video[0]
    name = codec_name(stream)
    if stream.codec_context is None or not _has_decoder(name):
        container.close()
        raise UnsupportedCodec(f"no decoder for the {name} codec of {path.name}")
    stream.codec_context.thread_count = max(1, threads)
    return container, stream


def codec_name(stream) -> str:
    """The stream's codec (``av1``), not the decoder FFmpeg picked for it (``libdav1d``)."""
    context = stream.codec_context
    if context is None:
        return "unknown"
    return getattr(context.codec, "canonical_name", None) or context.name


COMMON_CODECS = ("h264", "hevc", "av1", "vp9", "vp8", "mpeg4", "mpeg2video", "mjpeg", "prores")


def decodable_codecs(names: Sequence[str]) -> list[str]:
    """Those of ``names`` this machine's FFmpeg (PyAV's) can decode (``prep doctor`` lists them)."""
    return [name for name in names if _has_decoder(name)]


def _has_decoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "r")
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or av.error.*
        return False
    return True


INDEXES_KEPT = 16  # long videos that many segments are cut from, per process


def index_stream(path: Path) -> StreamIndex:
    """Every presented frame of ``path``'s first video stream, from its packets alone.

    Kept for the file's current size and modification time: the segments of one long video
    (How2Sign, YouTube-ASL, WLASL) are indexed once, not once per segment; a file that changed
    is indexed again."""
    try:
        stat = path.stat()
    except OSError:
        return _index(path)  # fails with the reason the decoder gives
    return _cached_index(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=INDEXES_KEPT)
def _cached_index(path: str, size: int, mtime_ns: int) -> StreamIndex:
    del size, mtime_ns  # part of the cache key only
    return _index(Path(path))


def _index(path: Path) -> StreamIndex:
    container, stream = _open(path)
    pts, dts, keys = [], [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:  # flush packets; an edit list's hidden frames
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                raise DecodeError(f"cannot index {path.name}: a packet without timestamps")
            pts.append(stamp)
            dts.append(packet.dts if packet.dts is not None else stamp)
            keys.append(packet.is_keyframe)
        context = stream.codec_context
        info = (
            stream.time_base,
            codec_name(stream),
            context.width,
            context.height,
            stream.average_rate,
        )
    except DecodeError:
        raise
    except av.FFmpegError as exc:  # a damaged container fails while demuxing
        raise DecodeError(f"cannot index {path.name}: {first_line(exc)}") from exc
    finally:
        container.close()
    if not pts:
        raise DecodeError(f"video has no frames: {path.name}")
    return _presented(
        np.asarray(pts, np.int64), np.asarray(dts, np.int64), np.asarray(keys, bool), *info
    )


def _presented(pts, dts, keys, time_base, codec, width, height, rate) -> StreamIndex:
    """Packets (decode order) -> frames (presentation order), restarts unwrapped."""
    offsets, restarts = _unwrap_offsets(dts, time_base)
    order = np.argsort(pts + offsets, kind="stable")
    line = (pts + offsets)[order]
    times = (line - line[0]).astype(np.float64) * float(time_base)
    rate = Fraction(rate) if rate else None
    arrays = pts[order], times, keys[order]
    for array in arrays:
        array.setflags(write=False)  # an index is shared by every segment of its file
    return StreamIndex(*arrays, Fraction(time_base), codec, width, height, rate, restarts)


def _unwrap_offsets(
    dts: np.ndarray, time_base: Fraction, max_jump_s: float = 60.0
) -> tuple[np.ndarray, int]:
    """Per-packet offsets that continue the clock where decode timestamps go back or leap ahead."""
    steps = np.diff(dts)
    usual = int(np.median(steps[steps > 0])) if (steps > 0).any() else 1
    breaks = np.flatnonzero((steps <= 0) | (steps * float(time_base) > max_jump_s)) + 1
    offsets = np.zeros(len(dts), np.int64)
    for start in breaks:
        shift = dts[start - 1] + offsets[start - 1] + usual - dts[start]
        offsets[start:] = shift
    return offsets, len(breaks)


class VideoFileSource:
    """A video file, or a [start, end) segment of one (seconds on its own time line)."""

    def __init__(
        self,
        path: Path,
        fps: float | None = None,
        start: float | None = None,
        end: float | None = None,
        threads: int = 1,
        index: StreamIndex | None = None,
    ) -> None:
        del fps  # a file's frame times come from its timestamps, whatever a descriptor says
        self.path, self._threads = path, threads
        self.index = index or index_stream(path)
        self._first, stop = segment_slice(self.index.times, start, end)
        self.num_frames = stop - self._first
        self.fps = self.index.fps
        self.width, self.height = self.index.width, self.index.height
        self.codec, self.timing = self.index.codec, self.index.timing
        self._container = self._frames = None
        self._next = 0  # presented-frame number of the frame ``self._frames`` yields next
        self._keys = np.flatnonzero(
            self.index.keyframes
        )  # presented-frame numbers a seek can land on
        self._seekable = (
            not self.index.restarts
        )  # a seek needs one clock; off after a seek misled us

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        """Seconds from the segment's first frame, from the stream's own timestamps."""
        absolute = self._first + np.asarray(indices, dtype=np.int64)
        return self.index.times[absolute] - self.index.times[self._first]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """The frames at ``indices`` (ascending), each checked against its timestamp."""
        wanted = [self._first + int(i) for i in indices]
        if any(b <= a for a, b in zip(wanted, wanted[1:])):
            raise ValueError("frame indices must be strictly ascending")
        out = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)
        try:
            for slot, number in enumerate(wanted):
                out[slot] = self._decode_frame_checked(number)
        except DecodeError:
            self.close()
            raise
        except av.FFmpegError as exc:  # a damaged stream; any other error is a bug and stays one
            self.close()
            raise DecodeError(f"cannot decode {self.path.name}: {first_line(exc)}") from exc
        return out

    def _decode_frame_checked(self, number: int) -> np.ndarray:
        """A frame; when a seek landed somewhere its index did not expect, the same frame again
        by decoding from the start (and no more seeks in this file)."""
        seeking = self._seekable
        try:
            return self._decode_frame(number)
        except DecodeError:
            if not seeking:
                raise
            self._seekable, self._frames = False, None
            return self._decode_frame(number)

    def _decode_frame(self, number: int) -> np.ndarray:
        self._position_for(number)
        for frame in self._frames:
            current = self._next
            self._next += 1
            if current >= len(self.index.pts):
                raise DecodeError(
                    f"{self.path.name} presents more frames than its {len(self.index.pts)} indexed"
                )
            if frame.pts is not None and frame.pts != self.index.pts[current]:
                raise DecodeError(
                    f"{self.path.name}: frame {current} presents at pts {frame.pts}, "
                    f"its index says {self.index.pts[current]}"
                )
            if current == number:
                image = frame.to_ndarray(format="rgb24")
                if image.shape[:2] != (self.height, self.width):
                    raise DecodeError(
                        f"{self.path.name}: frame size changes at frame {current} to {image.shape[:2]}"
                    )
                return image
        raise DecodeError(
            f"{self.path.name} ends after {self._next} of {len(self.index.pts)} indexed frames"
        )

    def _position_for(self, number: int) -> None:
        """Restart, seek or go on, so that the decoder's next frame is at most ``number``."""
        keyframe = self._keyframe_at_or_before(number)
        if self._frames is not None and number >= self._next:
            if not self._seekable or keyframe - self._next < SEEK_MIN_SKIP:
                return  # decoding on is cheaper, or the clock is not one a seek can trust
        self._restart()
        if not self._seekable or keyframe == 0:
            return
        self._container.seek(int(self.index.pts[keyframe]), stream=self._stream, backward=True)
        self._frames = self._aligned(self._stream_frames(), keyframe)

    def _keyframe_at_or_before(self, number: int) -> int:
        position = int(np.searchsorted(self._keys, number, side="right"))
        return int(self._keys[position - 1]) if position else 0

    def _aligned(self, frames: Iterator, keyframe: int) -> Iterator:
        """After a seek: drop frames before the keyframe and set ``_next`` from the first pts."""
        target = self.index.pts[keyframe]
        for frame in frames:
            if frame.pts is None:
                raise DecodeError(f"{self.path.name}: frames without timestamps after a seek")
            if frame.pts < target:
                continue
            self._next = int(np.searchsorted(self.index.pts, frame.pts))
            yield frame
            break
        yield from frames

    def _restart(self) -> None:
        self.close()
        self._container, self._stream = _open(self.path, self._threads)
        self._frames, self._next = self._stream_frames(), 0

    def _stream_frames(self) -> Iterator:
        return self._container.decode(self._stream)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing left to release
            pass
