"""Segments cut from one long video (How2Sign full videos, YouTube-ASL, WLASL) against the same
segments as files of their own, decoded frame for frame, side by side in one run.

The long video is a 10-minute h264 clip of the synthetic signer (libx264, a keyframe every 2 s
as streaming encoders place them); ten 5-s segments spread over it are read through
``open_source(video, start, end)`` and, as the baseline, from ten files holding exactly those
frames (encoded alike). Both sides decode every frame of every segment to RGB in 16-frame
batches, as the stages read them. Goal: per segment, cutting costs at most 1.3x reading a file
of its own (the segments' video is indexed once, and each segment starts at the keyframe
before it instead of at the start of the video). Each cut's first frame is checked equal to
the long video's frame at that time, decoded from the start with plain PyAV.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from _results import record

from pipeline import synthetic
from pipeline.video import FrameSelection, iter_clip, open_source

FPS = 25
SIZE = (160, 120)
KEYFRAME_EVERY = 2 * FPS


def write_h264(path: Path, frames) -> Path:
    """``frames`` as an h264 mp4 (constant rate, a keyframe every 2 s, no B-frame reordering
    surprises beyond x264's defaults)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(KEYFRAME_EVERY), "preset": "veryfast", "crf": "23"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frames_at(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """Frames of ``path`` by presentation number, decoded from the start with plain PyAV:
    where a cut segment must begin."""
    found = {}
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in wanted:
                found[number] = frame.to_ndarray(format="rgb24")
            if len(found) == len(wanted):
                break
    return found


def decode_all(source) -> tuple[int, np.ndarray]:
    """Every frame in 16-frame batches, then the source closed, as the stages read a clip."""
    count, first = 0, None
    for clip in iter_clip(source, FrameSelection(), 16):
        first = clip.frames[0] if first is None else first
        count += len(clip.frames)
    source.close()
    return count, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    total = int(args.minutes * 60 * FPS)
    with tempfile.TemporaryDirectory(prefix="prep-bench-segments-") as tmp:
        work = Path(tmp)
        starts = np.linspace(30, args.minutes * 60 - 30 - args.seconds, args.segments)
        length = int(args.seconds * FPS)
        # the frames presented in [start, end), as prep (and ffmpeg -ss/-to) keep them
        firsts = [int(np.ceil(s * FPS - 1e-6)) for s in starts]
        windows = [(first, first + length) for first in firsts]
        kept: list[list[np.ndarray]] = [[] for _ in windows]

        def keep_segments(frames):
            for number, frame in enumerate(frames):
                for (first, stop), store in zip(windows, kept):
                    if first <= number < stop:
                        store.append(frame)
                yield frame

        rendered = synthetic.render_frames(total, SIZE[0], SIZE[1], "segments")
        video = write_h264(work / "long.mp4", keep_segments(rendered))
        files = [write_h264(work / f"segment{i}.mp4", frames) for i, frames in enumerate(kept)]

        def cut() -> list[tuple[int, np.ndarray]]:
            return [decode_all(open_source(video, FPS, s, s + args.seconds)) for s in starts]

        def own_files() -> list[tuple[int, np.ndarray]]:
            return [decode_all(open_source(path, FPS)) for path in files]

        cut_runs, file_runs = [], []
        for _ in range(args.repeats):  # alternated: the machine's noise hits both alike
            began = time.perf_counter()
            from_cut = cut()
            cut_runs.append(time.perf_counter() - began)
            began = time.perf_counter()
            from_files = own_files()
            file_runs.append(time.perf_counter() - began)
        expected = frames_at(video, set(firsts))
        for (n_cut, first), (n_file, _), number in zip(from_cut, from_files, firsts):
            assert n_cut == n_file == length, (n_cut, n_file, length)
            assert np.array_equal(first, expected[number]), (
                f"segment at frame {number} starts elsewhere"
            )
    cold = cut_runs[0] / file_runs[0]  # the first pass indexes the long video (once)
    per_cut = statistics.median(cut_runs) / args.segments
    per_file = statistics.median(file_runs) / args.segments
    ratio = per_cut / per_file
    print(f"| segments of a {args.minutes:g}-min video | s per {args.seconds:g}-s segment |")
    print("|---|---|")
    print(f"| cut from the long video (index once, seek to the keyframe before) | {per_cut:.3f} |")
    print(f"| the same frames as a file of their own | {per_file:.3f} |")
    print(f"| ratio | {ratio:.2f} (goal <= 1.3) |")
    print(f"| ratio of the first pass, indexing the long video once | {cold:.2f} |")
    record(
        "segments",
        f"{args.segments} x {args.seconds:g}-s segments of a {args.minutes:g}-min h264 video "
        f"({SIZE[0]}x{SIZE[1]}, keyframe every 2 s) vs their own files",
        f"{per_cut * 1000:.0f} ms/segment",
        f"{per_file * 1000:.0f} ms/segment",
        ratio,
        "<= 1.3",
    )


if __name__ == "__main__":
    main()
