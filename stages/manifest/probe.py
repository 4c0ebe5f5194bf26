"""Open each candidate's frames or video once: count, measure, spot-check decoding, fingerprint.

A problem becomes a quarantine row with a one-line reason; the unit goes on with the next sample.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import manifest as m
from pipeline.crop import CroppedSource
from pipeline.video import (
    DecodeError,
    FrameFolderSource,
    FrameSelection,
    interleaved_frames,
    iter_clip,
    list_frame_files,
    numbering_gaps,
)
from pipeline.video_file import UnsupportedCodec, VideoFileSource, index_stream

DEEP_CHECK_BATCH = 16  # see pipeline.video.iter_clip on batch sizes
MIN_FPS, MAX_FPS = m.FPS_RANGE


class Rejection(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class ProbeContext:
    base: Path  # folder the candidates' relative paths start from
    dataset: str
    language: str | None  # the descriptor's language, used when a sample names none
    fps: float | None  # the descriptor's fps for frame folders
    fps_override: float | None
    deep_check: bool
    min_frames: int
    frame_count_tolerance: int
    known_defects: dict[str, str] = field(default_factory=dict)
    signer_crop: bool = False  # apply a candidate's signer box (its frames are then the crop)
    _hashes: dict[Path, str] = field(default_factory=dict)


def probe(cand: dict, ctx: ProbeContext) -> tuple[dict | None, dict | None]:
    """(manifest row, None) for a good sample, (None, quarantine row) for a rejected one."""
    try:
        return _probe(cand, ctx), None
    except Rejection as rejection:
        detail = rejection.detail
        if cand["id"] in ctx.known_defects:
            detail = f"{detail} (known defect: {ctx.known_defects[cand['id']]})"
        row = m.quarantine_row(
            cand["id"],
            cand["split"],
            ctx.dataset,
            "manifest",
            rejection.reason,
            detail,
            cand["source_path"] or None,
        )
        return None, row


def _probe(cand: dict, ctx: ProbeContext) -> dict:
    if cand["reject"]:
        raise Rejection(*cand["reject"])
    path = Path(cand["source_path"])
    path = path if path.is_absolute() else ctx.base / path
    fps = cand.get("fps") or ctx.fps_override
    if path.is_dir() or (cand.get("kind") == "frames") or (not path.exists() and not path.suffix):
        kind, source, fingerprint = "frames", *_probe_folder(path, fps or ctx.fps, cand, ctx)
    else:
        kind, source, fingerprint = "video", *_probe_video(path, fps, cand, ctx)
    crop = cand.get("crop") if ctx.signer_crop else None
    if crop is not None:
        source = CroppedSource(source, crop)
        fingerprint = hashlib.sha256(f"{fingerprint}:crop{list(crop)}".encode()).hexdigest()
    _check_counts(source.num_frames, cand, ctx)
    if not MIN_FPS <= source.fps <= MAX_FPS:
        raise Rejection(
            m.INVALID_FIELD, f"frame rate {source.fps:g} outside {MIN_FPS}-{MAX_FPS} fps"
        )
    language = cand.get("language") or ctx.language
    if not language:
        raise Rejection(m.MISSING_FIELD, "no language given by the sample or the dataset")
    return {
        "id": cand["id"],
        "split": cand["split"],
        "dataset": ctx.dataset,
        "language": language,
        "source_path": cand["source_path"],
        "source_kind": kind,
        "num_frames": source.num_frames,
        "fps": source.fps,
        "width": source.width,
        "height": source.height,
        "translation": cand["translation"].strip(),
        "gloss": cand.get("gloss"),
        "signer": cand.get("signer"),
        "start": cand.get("start"),
        "end": cand.get("end"),
        "fingerprint": fingerprint,
        "codec": getattr(source, "codec", None),
        "frame_timing": getattr(source, "timing", "constant"),
        "source_id": cand.get("source_id"),
        "crop": None if crop is None else [float(v) for v in crop],
        "video_stream": getattr(source, "stream_index", None),
    }


def _probe_folder(
    folder: Path, fps: float | None, cand: dict, ctx: ProbeContext
) -> tuple[FrameFolderSource, str]:
    files = list_frame_files(folder)
    if not files:
        raise Rejection(m.MISSING_FRAMES, f"no numbered frame images at {cand['source_path']}")
    interleaved = interleaved_frames(files)
    if interleaved:
        raise Rejection(m.AMBIGUOUS_FRAMES, interleaved)
    gaps = numbering_gaps(files)
    if gaps:
        shown = ", ".join(str(n) for n in gaps[:5]) + (" …" if len(gaps) > 5 else "")
        raise Rejection(m.FRAME_GAP, f"{len(gaps)} frame number(s) missing: {shown}")
    for path in files:
        problem = image_structure_problem(path)
        if problem:
            raise Rejection(m.CORRUPT_FRAME, problem)
    if not fps:
        raise Rejection(m.MISSING_FIELD, "frame folder without fps (give --fps or an fps field)")
    try:
        source = FrameFolderSource(folder, fps, cand.get("start"), cand.get("end"))
        _spot_check(source, deep=ctx.deep_check)
    except DecodeError as exc:
        raise Rejection(m.CORRUPT_FRAME, str(exc)) from exc
    return source, _folder_fingerprint(files, cand)


def _probe_video(
    path: Path, fps: float | None, cand: dict, ctx: ProbeContext
) -> tuple[VideoFileSource, str]:
    try:
        if cand.get("frame_range") is not None:
            _frames_to_seconds(path, cand)
        source = VideoFileSource(path, fps, cand.get("start"), cand.get("end"))
        _check_segment(source, cand)
        _spot_check(source, deep=ctx.deep_check)
    except UnsupportedCodec as exc:
        raise Rejection(m.UNSUPPORTED_CODEC, str(exc)) from exc
    except DecodeError as exc:
        raise Rejection(m.UNREADABLE_FILE, str(exc)) from exc
    if path not in ctx._hashes:
        ctx._hashes[path] = _file_sha256(path)
    segment = f"{cand.get('start')}-{cand.get('end')}"
    return source, hashlib.sha256(f"{ctx._hashes[path]}:{segment}".encode()).hexdigest()


def _check_segment(source: VideoFileSource, cand: dict) -> None:
    """A segment must lie inside the video (one frame of slack at the end): a time past the end
    is a wrong annotation or the wrong file, and cutting it short would hide that."""
    times = source.index.times
    frame = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    length = times[-1] + frame
    for name in ("start", "end"):
        value = cand.get(name)
        if value is not None and value > length + frame + 1e-6:
            raise Rejection(
                m.SEGMENT_OUT_OF_RANGE,
                f"segment {name} {value:g} s is past the video's end at {length:.3f} s",
            )


def _frames_to_seconds(path: Path, cand: dict) -> None:
    """A segment given in frame numbers (WLASL's ``frame_range``: [first, stop) of the presented
    frames) becomes the row's ``start`` and ``end`` in seconds, the first frame's own timestamp
    and that of the frame after the last, so every later stage cuts exactly those frames. As
    with times, a range may end one frame past the video; further is a wrong annotation."""
    first, stop = cand["frame_range"]
    times = index_stream(path).times
    if first >= len(times) or (stop is not None and stop > len(times) + 1):
        shown = f"{first + 1}..{'end' if stop is None else stop}"
        raise Rejection(
            m.SEGMENT_OUT_OF_RANGE, f"frames {shown} are past the video's {len(times)} frames"
        )
    cand["start"] = float(times[first]) if first else None
    cand["end"] = float(times[stop]) if stop is not None and stop < len(times) else None


def _spot_check(source: Any, deep: bool) -> None:
    """Decode the last frame (a truncated file fails there), or every frame with ``deep``."""
    if source.num_frames == 0:
        return
    if deep:
        for _ in iter_clip(source, FrameSelection(), DEEP_CHECK_BATCH):
            pass
    else:
        source.read([source.num_frames - 1])


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_TRAILER = b"IEND\xaeB`\x82"
JPEG_MAGIC = b"\xff\xd8"
JPEG_TRAILER = b"\xff\xd9"


def image_structure_problem(path: Path) -> str | None:
    """Catch empty, truncated or mislabelled PNG/JPEG frames from their first and last bytes only."""
    size = path.stat().st_size
    if size == 0:
        return f"empty frame file {path.name}"
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        return None
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(max(0, size - 64))
        tail = handle.read()
    if suffix == ".png":
        ok = head.startswith(PNG_MAGIC) and PNG_TRAILER in tail
    else:
        ok = head.startswith(JPEG_MAGIC) and JPEG_TRAILER in tail
    return None if ok else f"frame {path.name} is truncated or not a {suffix[1:].upper()} file"


def _check_counts(num_frames: int, cand: dict, ctx: ProbeContext) -> None:
    if num_frames < ctx.min_frames:
        raise Rejection(
            m.TOO_FEW_FRAMES, f"{num_frames} frame(s), fewer than --min-frames {ctx.min_frames}"
        )
    expected = cand.get("expected_frames")
    if expected is not None and abs(expected - num_frames) > ctx.frame_count_tolerance:
        raise Rejection(
            m.FRAME_COUNT_MISMATCH, f"annotation says {expected} frames, found {num_frames}"
        )


def _folder_fingerprint(files: list[Path], cand: dict) -> str:
    """Names and sizes of every frame plus the bytes of the first and last: cheap, change-sensitive."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
    for path in (files[0], files[-1]):
        digest.update(path.read_bytes())
    digest.update(f"{cand.get('start')}-{cand.get('end')}".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
