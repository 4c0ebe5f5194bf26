"""Decoding: one interface over video files (PyAV, :mod:`pipeline.video_file`) and frame
folders (OpenCV, threaded).

Every source returns uint8 RGB frames ``[N, H, W, 3]`` with timestamps in seconds from the
start of the sample. Long clips are read in bounded batches (:func:`iter_clip`).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import cv2
import numpy as np

from pipeline.video_common import (  # re-exported: the readers share them
    DecodeError,
    segment_slice,
)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg"})
SAMPLING_MODES = ("uniform", "head")

cv2.setNumThreads(1)  # we parallelise across frames; nested OpenCV threads only contend


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of a sample are used: every ``step``-th, then at most ``max_frames``.

    ``sampling="uniform"`` spreads ``max_frames`` evenly over the clip, ``"head"`` keeps the
    first ones. The selection is recorded in every output that depends on it.
    """

    step: int = 1
    max_frames: int | None = None
    sampling: str = "uniform"

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"frame step must be >= 1, got {self.step}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")

    def indices(self, num_frames: int) -> np.ndarray:
        picked = np.arange(0, num_frames, self.step, dtype=np.int64)
        if self.max_frames is None or len(picked) <= self.max_frames:
            return picked
        if self.sampling == "head":
            return picked[: self.max_frames]
        spread = np.linspace(0, len(picked) - 1, self.max_frames).round().astype(np.int64)
        return picked[spread]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3], RGB
    timestamps: np.ndarray  # float64 [T], seconds from the sample's start
    indices: np.ndarray  # int64 [T], frame indices within the sample


@dataclass(frozen=True)
class ChunkInfo:
    """What a consumer of decoded frames knows about them: which clip, which of its frames."""

    position: int  # the clip's place in its work unit
    item: dict  # the clip's manifest row
    indices: np.ndarray  # frame indices within the clip


class FrameSource(Protocol):
    num_frames: int
    fps: float
    width: int
    height: int

    def read(self, indices: Sequence[int]) -> np.ndarray: ...


class FrameFolderSource:
    """A folder of numbered images (PNG/JPEG), decoded with OpenCV in a thread pool; its frames
    are :func:`list_frame_files`, and two sequences interleaved in it are a :class:`DecodeError`."""

    def __init__(
        self,
        folder: Path,
        fps: float,
        start: float | None = None,
        end: float | None = None,
        threads: int | None = None,
    ) -> None:
        self.files = list_frame_files(folder)
        if not self.files:
            raise DecodeError(f"no frames in {folder.name}")
        interleaved = interleaved_frames(self.files)
        if interleaved:
            raise DecodeError(interleaved)
        self.fps = float(fps)
        first, stop = segment_slice(np.arange(len(self.files)) / self.fps, start, end)
        self.files = self.files[first:stop]
        self.num_frames = len(self.files)
        self._threads = threads or min(4, os.cpu_count() or 1)
        probe = decode_image(self.files[0]) if self.files else np.zeros((0, 0, 3), np.uint8)
        self.height, self.width = probe.shape[:2]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        paths = [self.files[int(i)] for i in indices]
        out = np.empty((len(paths), self.height, self.width, 3), dtype=np.uint8)

        def load(item: tuple[int, Path]) -> None:
            position, path = item
            image = decode_image(path)
            if image.shape[:2] != (self.height, self.width):
                raise DecodeError(f"frame size changes at {path.name}: {image.shape[:2]}")
            out[position] = image

        list(_thread_pool(self._threads).map(load, enumerate(paths)))
        return out

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(indices, dtype=np.float64) / self.fps


def decode_image(path: Path) -> np.ndarray:
    """One image file as uint8 RGB ``[H, W, 3]``; raises :class:`DecodeError` on a bad file."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DecodeError(f"corrupt or unreadable image {path.name}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


_DIGITS = re.compile(r"(\d+)(?=\.[^.]+$)")

# Files operating systems leave beside data: macOS AppleDouble ``._<name>`` (a PNG's resource fork
# is named ``._images0001.png``) and Finder's ``.DS_Store``, Windows' ``Thumbs.db`` and
# ``desktop.ini``. They are never a frame or a corpus file, whatever their suffix.
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def is_system_file(name: str) -> bool:
    """Whether ``name`` is one of :data:`SYSTEM_FILES` or an AppleDouble ``._`` file."""
    return name.startswith("._") or name in SYSTEM_FILES


def frame_number(path: Path) -> int | None:
    """The number at the end of a frame's file name (``images0042.png`` -> 42)."""
    match = _DIGITS.search(path.name)
    return int(match.group(1)) if match else None


def list_frame_files(folder: Path) -> list[Path]:
    """The frames of a frame folder in frame order: its numbered images.

    An image without a number (``thumbnail.png``) has no place in the sequence, so it is never a
    frame; neither are system files (:func:`is_system_file`) nor files of other types.
    """
    if not folder.is_dir():
        return []
    frames = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not is_system_file(p.name)
        and frame_number(p) is not None
        and p.is_file()
    ]
    return sorted(frames, key=lambda p: (frame_number(p), p.name))


def interleaved_frames(files: Sequence[Path]) -> str | None:
    """Why ``files`` are not one sequence, or None: two naming patterns (``cam1_0001.png`` and
    ``cam2_0001.png``) or one number twice (``img01.png`` and ``img001.png``) would interleave
    two clips into one, and which one is meant is the user's call."""
    patterns: dict[str, Path] = {}
    numbers: dict[int, Path] = {}
    for path in files:
        match = _DIGITS.search(path.name)
        if match is None:
            continue
        pattern = f"{path.name[: match.start()]}#{path.name[match.end() :]}"
        patterns.setdefault(pattern, path)
        if len(patterns) > 1:
            first, second = sorted(p.name for p in patterns.values())[:2]
            return f"two numbered sequences in one folder: {first} and {second}"
        number = int(match.group(1))
        if number in numbers:
            return f"frame number {number} twice: {numbers[number].name} and {path.name}"
        numbers[number] = path
    return None


def numbering_gaps(files: Sequence[Path]) -> list[int]:
    """Frame numbers missing between the first and last file (unnumbered files are ignored)."""
    present = {n for n in (frame_number(p) for p in files) if n is not None}
    if not present:
        return []
    return [n for n in range(min(present), max(present) + 1) if n not in present]


def open_source(
    path: Path,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    threads: int | None = None,
    crop: Sequence[float] | None = None,
) -> FrameSource:
    """A frame source for a video file or a frame folder; ``fps`` is required for folders.
    ``crop`` (the manifest's signer box, fractions of the frame) cuts every frame to it."""
    if path.is_dir():
        if not fps:
            raise DecodeError(f"frame folder {path.name} needs an fps (descriptor or --fps)")
        source = FrameFolderSource(path, fps, start, end, threads)
    else:
        from pipeline.video_file import VideoFileSource  # it builds on this module's pieces

        source = VideoFileSource(path, fps, start, end, threads or 1)
    if crop is None:
        return source
    from pipeline.crop import CroppedSource

    return CroppedSource(source, crop)


def open_sample(base_dir: Path, row: Mapping[str, Any], threads: int | None = None) -> FrameSource:
    """The frames of one manifest row, as every stage, exporter and report reads them: its file or
    folder under the corpus's base folder (:func:`pipeline.manifest.source_base`), its segment and
    its signer crop. A source that no longer has the frames the manifest counted (a file replaced
    since) raises :class:`DecodeError`: its frame numbers would not be the manifest's."""
    source = open_source(
        base_dir / row["source_path"],
        row["fps"],
        row["start"],
        row["end"],
        threads,
        row.get("crop"),
    )
    if source.num_frames != row["num_frames"]:
        raise DecodeError(
            f"{source.num_frames} frames now, the manifest counted {row['num_frames']}: rerun it"
        )
    return source


def sample_frames(
    base_dir: Path,
    row: Mapping[str, Any],
    selection: FrameSelection,
    batch_size: int = 16,
    threads: int | None = None,
) -> Iterator[Clip]:
    """A manifest row's selected frames (``selection``: the manifest's frame selection, in its
    provenance) in bounded batches, each with its frames' times in seconds from the sample's
    start and their indices; the source is closed when the iteration ends.

    The one way a stage reads a clip::

        selection = FrameSelection(**m.read_provenance(manifest_table)["frame_selection"])
        for clip in sample_frames(base_dir, row, selection):
            clip.frames, clip.timestamps, clip.indices  # [T,H,W,3] uint8 RGB, [T] s, [T]
    """
    source = open_sample(base_dir, row, threads)
    try:
        yield from iter_clip(source, selection, batch_size)
    finally:
        if hasattr(source, "close"):
            source.close()


def iter_clip(
    source: FrameSource, selection: FrameSelection, batch_size: int = 16
) -> Iterator[Clip]:
    """Selected frames in batches of at most ``batch_size``: memory stays bounded on long clips.
    Small batches are also faster: a batch of large frames past glibc's mmap threshold (32 MiB)
    is fresh memory each time, and its page faults cost a quarter of the decode (measured)."""
    indices = selection.indices(source.num_frames)
    for begin in range(0, len(indices), batch_size):
        chunk = indices[begin : begin + batch_size]
        yield Clip(source.read(chunk), source.timestamps(chunk), chunk)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="prep-decode")
    return _POOLS[threads]
