"""Decode throughput of prep's readers against the plain tools, measured side by side in one run.

- video: prep's PyAV path (presentation-time indexed, one thread) vs ``ffmpeg -threads 1 ...
  -f rawvideo /dev/null`` on the same h264 clip: the synthetic signer, and real content (the
  real hand clip of ../shared looped to 580 frames, when present); goal >= 0.9 per core.
- frame folders: prep's threaded OpenCV reader vs a plain per-image ``cv2.imread`` loop on the
  same PNG (Phoenix14T-sized) and JPEG (CSL-Daily-sized) folders; goal >= 1.0.

Needs Debian's ffmpeg (``apt-get install ffmpeg``) for the video comparison. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _results import record

from pipeline import synthetic
from pipeline.video import FrameFolderSource, FrameSelection, iter_clip, open_source

CHUNK_FRAMES = 16  # batches as the features and hand-captions stages read them (--chunk-frames)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg runs as a child)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def make_h264_clip(path: Path, frames: int) -> None:
    """An h264 clip of the synthetic signer at 540x720, encoded by ffmpeg's libx264."""
    tmp = path.with_suffix(".raw.mp4")
    synthetic.write_video(tmp, synthetic.render_frames(frames, 540, 720, "bench"), 25.0, (540, 720))
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(tmp),
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    tmp.unlink()


def make_real_clip(path: Path, loops: int = 10) -> Path | None:
    """The real hand clip (../shared/data/hand_clip.mp4) looped ``loops`` times, re-encoded with
    libx264 so the result is one ordinary stream (58 x 10 = 580 frames)."""
    source = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand_clip.mp4"
    if not source.is_file():
        print(f"{source} not found: real-content video comparison skipped")
        return None
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            str(loops - 1),
            "-i",
            str(source),
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-an",
            str(path),
        ],
        check=True,
    )
    return path


def bench_video(clip: Path, repeats: int, label: str = "video h264") -> dict:
    source = open_source(clip, threads=1)
    frames = source.num_frames

    def ours() -> None:
        for _ in iter_clip(open_source(clip, threads=1), FrameSelection(), batch_size=CHUNK_FRAMES):
            pass

    def ffmpeg() -> None:
        subprocess.run(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-threads",
                "1",
                "-i",
                str(clip),
                "-pix_fmt",
                "rgb24",
                "-f",
                "rawvideo",
                "-y",
                "/dev/null",
            ],
            check=True,
        )

    return result(
        f"{label} {source.width}x{source.height}, {frames} frames",
        frames,
        timed(ours, repeats),
        timed(ffmpeg, repeats),
        "ffmpeg -threads 1",
        0.9,
    )


def bench_folder(folder: Path, repeats: int, label: str) -> dict:
    source = FrameFolderSource(folder, fps=25)
    indices = list(range(source.num_frames))

    def ours() -> None:
        FrameFolderSource(folder, fps=25).read(indices)

    def opencv_loop() -> None:
        for path in sorted(folder.iterdir()):
            cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)

    return result(
        label,
        len(indices),
        timed(ours, repeats),
        timed(opencv_loop, repeats),
        "per-image cv2.imread loop",
        1.0,
    )


def result(case: str, frames: int, ours: tuple, baseline: tuple, name: str, goal: float) -> dict:
    return {
        "case": case,
        "ours": frames / ours[0],
        "baseline": frames / baseline[0],
        "baseline_name": name,
        "goal": goal,
        "ours_cpu": frames / ours[1],
        "baseline_cpu": frames / baseline[1],
    }


def write_folder(folder: Path, frames: int, size: tuple[int, int], pattern: str) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(synthetic.render_frames(frames, *size, folder.name)):
        noisy = np.clip(
            frame.astype(np.int16) + np.random.default_rng(i).integers(-12, 12, frame.shape), 0, 255
        )
        cv2.imwrite(str(folder / pattern.format(i + 1)), noisy.astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames per clip and folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if shutil.which("ffmpeg"):
            clip = tmp / "clip.mp4"
            make_h264_clip(clip, args.frames)
            rows.append(bench_video(clip, args.repeats))
            real = make_real_clip(tmp / "real.mp4")
            if real is not None:
                rows.append(bench_video(real, args.repeats, "video h264, real hand clip looped,"))
        else:
            print("ffmpeg not found: video comparison skipped (apt-get install ffmpeg)")
        write_folder(tmp / "png", args.frames, (210, 260), "images{:04d}.png")
        rows.append(
            bench_folder(tmp / "png", args.repeats, f"PNG folder 210x260, {args.frames} frames")
        )
        write_folder(tmp / "jpg", args.frames // 2, (512, 512), "{:06d}.jpg")
        rows.append(
            bench_folder(
                tmp / "jpg", args.repeats, f"JPEG folder 512x512, {args.frames // 2} frames"
            )
        )
    print(f"cores: {os.cpu_count()}\n")
    print(
        "| case | prep frames/s | baseline | baseline frames/s | wall ratio | per-CPU-second ratio | goal |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['ours']:.0f} | {r['baseline_name']} | {r['baseline']:.0f} | "
            f"{r['ours'] / r['baseline']:.2f} | {r['ours_cpu'] / r['baseline_cpu']:.2f} | >= {r['goal']} |"
        )
    for r in rows:
        record(
            "decode",
            r["case"],
            f"{r['ours']:.0f} frames/s",
            f"{r['baseline_name']}: {r['baseline']:.0f} frames/s",
            r["ours"] / r["baseline"],
            f">= {r['goal']}",
        )
        record(
            "decode",
            f"{r['case']}, per CPU second",
            f"{r['ours_cpu']:.0f} frames/CPU-s",
            f"{r['baseline_name']}: {r['baseline_cpu']:.0f} frames/CPU-s",
            r["ours_cpu"] / r["baseline_cpu"],
            f">= {r['goal']}",
        )


if __name__ == "__main__":
    main()
