"""What the ``ffmpeg`` command line shows of a video file: the stream it picks, each frame turned
by the stream's display matrix and converted to RGB by the same filters, with the same scaler
settings, so a stored frame is byte for byte ``ffmpeg -i clip -pix_fmt rgb24``.

The conversion runs through libavfilter (``scale`` with its bicubic default, then ``format``)
rather than through PyAV's ``VideoFrame.to_ndarray``: PyAV calls ``sws_scale_frame``, which in
FFmpeg 8 sites 4:2:0 chroma to the left of its luma samples, while ``ffmpeg`` converts through the
``scale`` filter, which keeps it centred, so every 10-bit (or other non-8-bit 4:2:0) clip came out
up to 100 levels off at colour edges, a mean of 0.3 to 4 levels. 8-bit 4:2:0 takes swscale's
unscaled path either way and is unchanged.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import av
import numpy as np

SCALER = "flags=bicubic"  # the sws_flags ffmpeg's filter graphs use unless told otherwise


def best_video_stream(streams: Sequence):
    """The stream ``ffmpeg`` decodes when no ``-map`` is given (fftools/ffmpeg_mux_init.c
    ``map_auto_video``): the largest coded picture, a stream marked default ahead by 5,000,000
    pixels, an attached picture (cover art) behind any video; a tie goes to the first. ffmpeg
    also puts streams that had packets while probing ahead; PyAV does not say which did."""
    best, best_score = streams[0], 0
    for stream in streams:
        context = stream.codec_context
        area = context.width * context.height if context is not None else 0
        score = area + 5_000_000 * bool(stream.disposition & av.stream.Disposition.default)
        if stream.disposition & av.stream.Disposition.attached_pic:
            score = 1
        if score > best_score:
            best, best_score = stream, score
    return best


def display_filters(matrix: np.ndarray | None) -> tuple[tuple[str, str | None], ...]:
    """The filters ``ffmpeg`` inserts to show a frame whose display matrix is ``matrix`` (nine
    16.16 fixed-point numbers, or None): fftools' autorotate (``configure_input_video_filter``
    in ffmpeg_filter.c of FFmpeg 5.1, the same in ffplay.c ``configure_video_filters``)."""
    if matrix is None:
        return ()
    theta = _clockwise_degrees(matrix)
    if abs(theta - 90) < 1.0:
        return (("transpose", "cclock_flip" if matrix[3] > 0 else "clock"),)
    if abs(theta - 180) < 1.0:
        flips = (("hflip", None),) if matrix[0] < 0 else ()
        return flips + ((("vflip", None),) if matrix[4] < 0 else ())
    if abs(theta - 270) < 1.0:
        return (("transpose", "clock_flip" if matrix[3] < 0 else "cclock"),)
    if abs(theta) > 1.0:
        return (("rotate", f"{theta:f}*PI/180"),)
    return (("vflip", None),) if matrix[4] < 0 else ()


def _clockwise_degrees(matrix: np.ndarray) -> float:
    """cmdutils' ``get_rotation``: minus ``av_display_rotation_get``, rounded, in [0, 360)."""
    a, b, c, d = (float(v) / 65536 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if scale_x == 0 or scale_y == 0:
        return 0.0  # a degenerate matrix: ffmpeg's NaN angle falls through every branch
    theta = -round(-math.degrees(math.atan2(b / scale_y, a / scale_x)))
    return theta - 360 * math.floor(theta / 360 + 0.9 / 360)


def displayed_size(
    width: int, height: int, filters: tuple[tuple[str, str | None], ...]
) -> tuple[int, int]:
    """(width, height) once ``filters`` ran: a transpose swaps them, nothing else changes them."""
    swaps = sum(name == "transpose" for name, _ in filters)
    return (height, width) if swaps % 2 else (width, height)


def display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's display matrix (FFmpeg attaches the stream's to every decoded frame)."""
    for data in frame.side_data:
        if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            return np.frombuffer(bytes(data), dtype="<i4")[:9].copy()
    return None


class RgbConverter:
    """Frames of one stream to RGB arrays through ``ffmpeg``'s filters, rebuilt only when the
    frames' size or pixel format changes (a stream that switches format mid-way)."""

    def __init__(self, filters: tuple[tuple[str, str | None], ...], time_base: Fraction) -> None:
        self._filters, self._time_base = filters, time_base
        self._graph = self._shape = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        shape = (frame.width, frame.height, frame.format.name)
        if shape != self._shape:
            self._graph, self._shape = self._build(frame), shape
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=self._time_base,
            )
        ]
        for name, args in (*self._filters, ("scale", SCALER), ("format", "rgb24")):
            nodes.append(graph.add(name, args))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes)
        graph.configure()
        return graph
