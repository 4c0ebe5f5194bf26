"""What both video readers share (:mod:`pipeline.video` for frame folders, :mod:`pipeline.video_file`
for video files): the decode error, its one-line gist, cutting a segment out of frame times, and
which codecs this machine's FFmpeg decodes."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np


class DecodeError(Exception):
    """A frame or file could not be decoded; the message is a one-line reason."""


TIME_TOLERANCE_S = 1e-6  # below any frame clock's tick; absorbs float rounding of tick * base


def segment_slice(times: np.ndarray, start: float | None, end: float | None) -> tuple[int, int]:
    """Frames [first, stop) of a segment given in seconds on the clip's time line: those whose
    presentation time lies in [start, end), as ``ffmpeg -ss start -to end`` and the ``trim``
    filter keep them (whole clip when not given). Works on real frame times, so a variable frame
    rate cuts the right seconds, and a frame shown before ``start`` never slips in."""
    if len(times) == 0:
        return 0, 0
    first = 0 if start is None else int(np.searchsorted(times, start - TIME_TOLERANCE_S, "left"))
    stop = (
        len(times) if end is None else int(np.searchsorted(times, end - TIME_TOLERANCE_S, "left"))
    )
    return first, max(first, stop)


def first_line(exc: BaseException) -> str:
    """The gist of a decoder error: its first line, at most 200 characters."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def codec_name(stream) -> str:
    """The stream's codec (``av1``), not the decoder FFmpeg picked for it (``libdav1d``)."""
    context = stream.codec_context
    if context is None:
        return "unknown"
    return getattr(context.codec, "canonical_name", None) or context.name


COMMON_CODECS = ("h264", "hevc", "av1", "vp9", "vp8", "mpeg4", "mpeg2video", "mjpeg", "prores")


def decodable_codecs(names: Sequence[str]) -> list[str]:
    """Those of ``names`` this machine's FFmpeg (PyAV's) can decode (``prep doctor`` lists them)."""
    return [name for name in names if has_decoder(name)]


def has_decoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "r")
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or av.error.*
        return False
    return True
