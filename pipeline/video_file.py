"""Video files read by presentation time: a frame's identity is its place among the frames the
stream presents, checked against its timestamp, never assumed from a frame rate.

The video stream is the one ``ffmpeg`` picks without ``-map`` (:func:`best_video_stream`). One
demux pass indexes its presented frames (:func:`index_stream`), decoding only the first frame to
learn how it is displayed: packets an edit list discards are left out, timestamps that restart
or jump back (MPEG-TS files joined byte for byte) are unwrapped onto one time line, decode
timestamps a demuxer leaves out (Matroska's first packets) are filled in, and variable frame
rates keep their real times. An AVI stores no presentation times: its frames are presented in
the order the decoder returns them. Reading decodes forward with PyAV (FFmpeg, with dav1d for
AV1) and hands over exactly the frames asked for, displayed and converted as ``ffmpeg`` shows
them (:mod:`pipeline.video_display`), seeking to a keyframe only where the timestamps are
monotonic. A stream that does not deliver the frames its index promises raises
:class:`DecodeError`, never pads.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from pipeline.open_containers import OPEN
from pipeline.video_common import (
    DecodeError,
    codec_name,
    first_line,
    has_decoder,
    segment_slice,
)
from pipeline.video_display import (
    RgbConverter,
    best_video_stream,
    display_filters,
    display_matrix,
    displayed_size,
)

SEEK_MIN_SKIP = 48  # frames the decoder would otherwise decode for nothing before a seek pays


class UnsupportedCodec(DecodeError):
    """The file's video codec has no decoder here; the message names the codec."""


@dataclass(frozen=True)
class StreamInfo:
    """What a file's chosen video stream is, beside its frames."""

    stream: int  # its index among the file's streams (``ffmpeg -map 0:<stream>``)
    time_base: Fraction
    codec: str
    width: int  # as displayed: after the display matrix turned it
    height: int
    average_rate: Fraction | None
    filters: tuple  # what ffmpeg's autorotate inserts (see pipeline.video_display)
    decode_order: bool  # frames are presented in decode order; ``pts`` holds decode times


@dataclass(frozen=True)
class StreamIndex:
    """The presented frames of a file's chosen video stream, in presentation order."""

    pts: np.ndarray  # int64: each frame's own timestamp, in time_base units
    times: np.ndarray  # float64: seconds from the first presented frame, one monotonic time line
    keyframes: np.ndarray  # bool: a decoder can start at this frame
    info: StreamInfo
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
        if self.info.average_rate:
            return float(self.info.average_rate)
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
    stream = best_video_stream(container.streams.video)
    name = codec_name(stream)
    if stream.codec_context is None or not has_decoder(name):
        container.close()
        raise UnsupportedCodec(f"no decoder for the {name} codec of {path.name}")
    stream.codec_context.thread_count = max(1, threads)
    return container, stream


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


DECODE_ORDER_FORMATS = ("avi",)  # containers that store no presentation time per frame


def _index(path: Path) -> StreamIndex:
    container, stream = _open(path)
    pts, dts, keys, first = [], [], [], None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:  # flush packets; an edit list's hidden frames
                continue
            if packet.pts is None and packet.dts is None:
                raise DecodeError(f"cannot index {path.name}: a packet without timestamps")
            pts.append(packet.pts)
            dts.append(packet.dts)
            keys.append(packet.is_keyframe)
            if first is None:
                first = _first_frame(stream, packet)
        if first is None:
            first = _first_frame(stream, None)
        info = _stream_info(container, stream, first)
    except DecodeError:
        raise
    except av.FFmpegError as exc:  # a damaged container fails while demuxing
        raise DecodeError(f"cannot index {path.name}: {first_line(exc)}") from exc
    finally:
        container.close()
    if not pts:
        raise DecodeError(f"video has no frames: {path.name}")
    return _presented(pts, dts, np.asarray(keys, bool), info)


def _first_frame(stream, packet) -> av.VideoFrame | None:
    """The first decoded frame, fed one packet at a time while indexing (None flushes): it
    carries the display matrix, which PyAV shows on frames only. A packet that does not decode
    is left to the reader, which meets it again and says what is wrong with it."""
    try:
        frames = stream.decode(packet)
    except av.FFmpegError:
        return None
    return frames[0] if frames else None


def _stream_info(container, stream, first: av.VideoFrame | None) -> StreamInfo:
    context = stream.codec_context
    filters = display_filters(display_matrix(first)) if first is not None else ()
    width, height = displayed_size(context.width, context.height, filters)
    rate = Fraction(stream.average_rate) if stream.average_rate else None
    decode_order = any(name in DECODE_ORDER_FORMATS for name in container.format.name.split(","))
    time_base = Fraction(stream.time_base)
    return StreamInfo(
        stream.index, time_base, codec_name(stream), width, height, rate, filters, decode_order
    )


def _presented(pts: list, dts: list, keys: np.ndarray, info: StreamInfo) -> StreamIndex:
    """Packets (decode order) -> frames (presentation order), restarts unwrapped. Where packets
    carry no presentation times (an AVI; libavformat then guesses them from the decode order),
    frames are presented in decode order at their decode times, as ffmpeg's best-effort
    timestamps present them."""
    decode = _filled_dts(dts, pts)
    by_decode = info.decode_order or all(stamp is None for stamp in pts)
    if by_decode:
        info = dataclasses.replace(info, decode_order=True)
        stamps = decode
    else:
        stamps = np.asarray([p if p is not None else d for p, d in zip(pts, decode)], np.int64)
    offsets, restarts = _unwrap_offsets(decode, info.time_base)
    order = np.argsort(stamps + offsets, kind="stable")
    line = (stamps + offsets)[order]
    times = (line - line[0]).astype(np.float64) * float(info.time_base)
    arrays = stamps[order], times, keys[order]
    for array in arrays:
        array.setflags(write=False)  # an index is shared by every segment of its file
    return StreamIndex(*arrays, info, restarts)


def _filled_dts(dts: list, pts: list) -> np.ndarray:
    """Decode timestamps with the holes a demuxer leaves filled in. Matroska stores none, and
    libavformat derives them from the presentation times once its reorder buffer is full, so
    with B-frames the first packets have none: they count back from the first known one at the
    usual step (as a decoder's clock would run), and a hole further on continues the packet
    before it. Without any decode time, the presentation times stand in."""
    known = [i for i, stamp in enumerate(dts) if stamp is not None]
    if not known:
        return np.asarray(pts, np.int64)
    values = np.asarray([stamp if stamp is not None else 0 for stamp in dts], np.int64)
    steps = np.diff(values[known])
    step = int(np.median(steps[steps > 0])) if (steps > 0).any() else 1
    values[: known[0]] = values[known[0]] - step * np.arange(known[0], 0, -1)
    for position in range(known[0] + 1, len(values)):
        if dts[position] is None:
            values[position] = values[position - 1] + step
    return values


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
        info = self.index.info
        self.width, self.height, self.stream_index = info.width, info.height, info.stream
        self.codec, self.timing = info.codec, self.index.timing
        self._container = self._frames = self._rgb = None
        self._next = 0  # presented-frame number of the frame ``self._frames`` yields next
        self._keys = np.flatnonzero(self.index.keyframes)  # where a seek can land
        # a seek needs one presentation clock; off, too, after a seek misled us
        self._seekable = not (self.index.restarts or info.decode_order)

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
            self._discard()
            raise
        except av.FFmpegError as exc:  # a damaged stream; any other error is a bug and stays one
            self._discard()
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
            if self._stamped(frame) and frame.pts != self.index.pts[current]:
                raise DecodeError(
                    f"{self.path.name}: frame {current} presents at pts {frame.pts}, "
                    f"its index says {self.index.pts[current]}"
                )
            if current == number:
                image = self._rgb(frame)
                if image.shape[:2] != (self.height, self.width):
                    raise DecodeError(
                        f"{self.path.name}: frame size changes at frame {current} to {image.shape[:2]}"
                    )
                return image
        raise DecodeError(
            f"{self.path.name} ends after {self._next} of {len(self.index.pts)} indexed frames"
        )

    def _stamped(self, frame) -> bool:
        """Whether the frame's pts is one its index holds (an AVI's are libavformat's guesses)."""
        return frame.pts is not None and not self.index.info.decode_order

    def _position_for(self, number: int) -> None:
        """Restart, seek or go on, so that the decoder's next frame is at most ``number``."""
        keyframe = self._keyframe_at_or_before(number)
        if self._frames is not None and number >= self._next:
            if not self._seekable or keyframe - self._next < SEEK_MIN_SKIP:
                return  # decoding on is cheaper, or the clock is not one a seek can trust
        self._restart(reuse=self._seekable and keyframe > 0)  # a reused one is always sought
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

    def _restart(self, reuse: bool = False) -> None:
        self.close()
        kept = OPEN.take(self.path, self._threads) if reuse else None
        self._container, self._stream = kept or _open(self.path, self._threads)
        self._frames, self._next = self._stream_frames(), 0
        self._rgb = RgbConverter(self.index.info.filters, self.index.info.time_base)

    def _stream_frames(self) -> Iterator:
        return self._container.decode(self._stream)

    def close(self) -> None:
        """Done reading: a file read by seeking keeps its container open for the next segment
        (:mod:`pipeline.open_containers`); any other is closed."""
        if self._container is not None and self._seekable:
            OPEN.give(self.path, self._threads, (self._container, self._stream))
            self._container = None
        self._discard()

    def _discard(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing left to release
            pass
