"""The decoders ``bench/decode.py`` sets prep's reader beside, each decoding every frame of a clip
to RGB on one thread, and a check of each one's frames against ``ffmpeg``'s own decode.

Every reader is a function ``clip -> iterator of uint8 arrays`` (single frames or batches of
frames, H x W x 3). A peer that is not installed here stays in the table as a row that says so
and how to install it: never silently dropped.

- ``ffmpeg -threads 1``: Debian's command line (``apt-get install ffmpeg``), timed as a process
  writing rawvideo to /dev/null, its start-up included;
- plain PyAV loop: ``container.decode(video=0)`` with ``thread_count = 1`` and
  ``frame.to_ndarray(format="rgb24")``, nothing else (no index, no timestamp check, no batch);
- decord 0.6 (``pip install decord``): ``VideoReader(ctx=cpu(0), num_threads=1)``, ``get_batch``
  over consecutive chunks of frames;
- torchcodec (``pip install --no-deps "torchcodec==0.17.*"``; it loads Debian's FFmpeg 5 to 7
  libraries, which ``apt-get install ffmpeg`` brings): ``VideoDecoder(seek_mode="exact",
  num_ffmpeg_threads=1, dimension_order="NHWC")``, ``get_frames_in_range`` over the same chunks,
  with torch held to one intra-op thread: left at its default, torch's thread pool spins beside
  each batch and burns about four times the CPU for the same frames (measured on a 2-core
  machine, 125 instead of ~550 frames per CPU second on the real hand clip).

``make bench`` (the ``dev`` extra) installs both Python peers.
"""

from __future__ import annotations

import resource
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from pipeline import video_file
from pipeline.video import FrameSelection, iter_clip, open_source

CHUNK_FRAMES = 16  # batches as the features and hand-captions stages read them (--chunk-frames)
INSTALL = {
    "decord": '.venv/bin/pip install "decord==0.6.0"',
    "torchcodec": '.venv/bin/pip install --no-deps "torchcodec==0.17.*" (needs apt-get install ffmpeg)',
}

Reader = Callable[[Path], Iterator[np.ndarray]]


@dataclass(frozen=True)
class Peer:
    """A reader to time, or the reason it cannot be (``read`` is None then)."""

    name: str
    read: Reader | None
    missing: str = ""


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and its finished children (ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_rounds(readers: dict[str, Reader], clip: Path, repeats: int) -> dict[str, tuple]:
    """The best (wall s, CPU s) of each reader over ``repeats`` rounds, the readers taking turns
    within each round so that a burst of load on a shared machine hits them all alike. The
    least-disturbed run is the one that says what the code costs (``timeit``'s rule): on a busy
    2-core machine a median moved by 20% from one run of this script to the next."""
    walls: dict[str, list] = {name: [] for name in readers}
    cpus: dict[str, list] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, read in readers.items():
            wall, cpu = time.perf_counter(), cpu_seconds()
            for _frames in read(clip):
                pass
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(cpu_seconds() - cpu)
    return {name: (min(walls[name]), min(cpus[name])) for name in readers}


def read_prep(clip: Path) -> Iterator[np.ndarray]:
    """prep's reader as the stages use it, the stream index built afresh as a new process would."""
    video_file._cached_index.cache_clear()
    for part in iter_clip(open_source(clip, threads=1), FrameSelection(), CHUNK_FRAMES):
        yield part.frames


def read_ffmpeg(clip: Path) -> Iterator[np.ndarray]:
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-threads", "1", "-i", str(clip)]
        + ["-pix_fmt", "rgb24", "-f", "rawvideo", "-y", "/dev/null"],
        check=True,
    )
    yield from ()


def read_pyav(clip: Path) -> Iterator[np.ndarray]:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def read_decord(clip: Path) -> Iterator[np.ndarray]:
    import decord

    reader = decord.VideoReader(str(clip), ctx=decord.cpu(0), num_threads=1)
    count = len(reader)
    for begin in range(0, count, CHUNK_FRAMES):
        chunk = list(range(begin, min(count, begin + CHUNK_FRAMES)))
        yield reader.get_batch(chunk).asnumpy()


def read_torchcodec(clip: Path) -> Iterator[np.ndarray]:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(
        str(clip), seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC"
    )
    count = decoder.metadata.num_frames
    for begin in range(0, count, CHUNK_FRAMES):
        yield decoder.get_frames_in_range(begin, min(count, begin + CHUNK_FRAMES)).data.numpy()


def peers() -> list[Peer]:
    """ffmpeg, the plain PyAV loop, decord and torchcodec: each usable here, or why not."""
    found = [Peer("ffmpeg -threads 1", read_ffmpeg), Peer("plain PyAV loop", read_pyav)]
    try:
        import decord  # noqa: F401

        found.append(Peer("decord", read_decord))
    except ImportError as exc:
        found.append(Peer("decord", None, f"not installed ({exc}): {INSTALL['decord']}"))
    try:
        import torch
        from torchcodec.decoders import VideoDecoder  # noqa: F401

        torch.set_num_threads(1)  # one thread, as every other reader here (see the docstring)
        found.append(Peer("torchcodec (exact seek)", read_torchcodec))
    except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: no FFmpeg it can load
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        found.append(Peer("torchcodec", None, f"cannot load ({reason}): {INSTALL['torchcodec']}"))
    return found


def frame_digests(read: Reader, clip: Path) -> list[int]:
    """One CRC-32 per frame the reader hands over, in order."""
    digests = []
    for part in read(clip):
        frames = part if part.ndim == 4 else part[None]
        digests += [zlib.crc32(np.ascontiguousarray(frame)) for frame in frames]
    return digests


def ffmpeg_digests(clip: Path, width: int, height: int) -> list[int]:
    """ffmpeg's decode of every presented frame (``-fps_mode passthrough``), one CRC-32 each,
    read frame by frame from the pipe so a long clip never sits in memory whole."""
    size = width * height * 3
    command = ["ffmpeg", "-loglevel", "error", "-i", str(clip), "-f", "rawvideo"]
    command += ["-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"]
    digests = []
    with subprocess.Popen(command, stdout=subprocess.PIPE) as process:
        while frame := process.stdout.read(size):
            digests.append(zlib.crc32(frame))
    if process.returncode:
        raise SystemExit(f"ffmpeg could not decode {clip.name}")
    return digests


def exactness(digests: list[int], reference: list[int]) -> str:
    """``580/580`` frames identical to ffmpeg's, or what differs."""
    same = sum(a == b for a, b in zip(digests, reference))
    text = f"{same}/{len(reference)}"
    if len(digests) != len(reference):
        text += f" ({len(digests)} frames, ffmpeg {len(reference)})"
    return text
