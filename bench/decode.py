"""Decode throughput of prep's readers against the other decoders, measured side by side in one run.

- video: prep's PyAV path (presentation-time indexed, one thread, the index built afresh each
  run) against every peer in ``bench/_decode_peers.py`` (``ffmpeg -threads 1``, a plain PyAV
  loop, decord, torchcodec), each decoding every frame to RGB, per CPU second (this process and
  its children) and per wall second, on: the synthetic signer (h264 540x720); the real hand clip
  of ../shared joined 10 times with ffmpeg's concat demuxer, its own h264 stream untouched
  (540x720, 580 frames); and that clip re-encoded as MPEG-4 Part 2 at 512x512, which stands in
  for AUTSL's videos (not available here). Goal on the real clips: >= 1.0 against every peer,
  per CPU second. Each reader's frames are also compared with ffmpeg's own decode.
- frame folders: prep's threaded OpenCV reader vs a plain per-image ``cv2.imread`` loop on the
  same PNG (Phoenix14T-sized) and JPEG (CSL-Daily-sized) folders; goal >= 1.0.

Needs Debian's ffmpeg (``apt-get install ffmpeg``) for the video comparison; a peer that is not
installed is a row saying how to install it. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _decode_peers import (
    cpu_seconds,
    exactness,
    ffmpeg_digests,
    frame_digests,
    peers,
    read_prep,
    timed_rounds,
)
from _results import record

from pipeline import synthetic
from pipeline.video import FrameFolderSource, open_source

HAND_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand_clip.mp4"
LOOPS = 10  # 58 frames x 10 = 580


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def ffmpeg(*args: object) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *map(str, args)], check=True)


def make_h264_clip(path: Path, frames: int) -> Path:
    """An h264 clip of the synthetic signer at 540x720, encoded by ffmpeg's libx264."""
    tmp = path.with_suffix(".raw.mp4")
    synthetic.write_video(tmp, synthetic.render_frames(frames, 540, 720, "bench"), 25.0, (540, 720))
    ffmpeg("-i", tmp, "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
    tmp.unlink()
    return path


def make_real_clip(path: Path) -> Path:
    """The real hand clip joined ``LOOPS`` times by ffmpeg's concat demuxer, its packets copied:
    the phone's own h264 stream (High profile, B-frames, yuvj420p), 580 frames."""
    listing = path.with_suffix(".txt")
    listing.write_text(f"file '{HAND_CLIP}'\n" * LOOPS)
    ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", "-an", path)
    return path


def make_mpeg4_clip(path: Path, real: Path) -> Path:
    """``real`` re-encoded as MPEG-4 Part 2 at 512x512 (AUTSL's codec and size), 580 frames."""
    ffmpeg("-i", real, "-c:v", "mpeg4", "-q:v", "4", "-vf", "scale=512:512", "-an", path)
    return path


def bench_peers(clip: Path, label: str, repeats: int) -> dict:
    """prep and every peer on one clip: rates, ratios and frames identical to ffmpeg's."""
    source = open_source(clip, threads=1)
    frames = source.num_frames
    case = f"{label} {source.width}x{source.height}, {frames} frames"
    found = peers()
    readers = {"prep": read_prep} | {p.name: p.read for p in found if p.read}
    reference = ffmpeg_digests(clip, source.width, source.height)
    exact = {
        name: exactness(frame_digests(read, clip), reference)  # also the warm-up run
        for name, read in readers.items()
        if not name.startswith("ffmpeg")
    }
    times = timed_rounds(readers, clip, repeats)
    rates = {name: (frames / wall, frames / cpu) for name, (wall, cpu) in times.items()}
    missing = {p.name: p.missing for p in found if not p.read}
    return {"case": case, "rates": rates, "exact": exact, "missing": missing}


def print_peers(row: dict) -> None:
    prep_wall, prep_cpu = row["rates"]["prep"]
    print(f"\n{row['case']}\n")
    print(
        "| reader | frames/s | frames/CPU-s | prep ÷ it, per CPU s | prep ÷ it, wall | identical to ffmpeg |"
    )
    print("|---|---|---|---|---|---|")
    for name, (wall, cpu) in row["rates"].items():
        print(
            f"| {name} | {wall:.0f} | {cpu:.0f} | {prep_cpu / cpu:.2f} | {prep_wall / wall:.2f} | "
            f"{row['exact'].get(name, 'the reference')} |"
        )
    for name, reason in row["missing"].items():
        print(f"| {name} | — | — | — | — | {reason} |")
    fastest = max((n for n in row["rates"] if n != "prep"), key=lambda n: row["rates"][n][1])
    print(
        f"\nfastest peer per CPU second: {fastest}, prep ÷ it {prep_cpu / row['rates'][fastest][1]:.2f}"
    )


def record_peers(row: dict, goal: float, only: tuple[str, ...] | None = None) -> None:
    """One figure per peer, per CPU second (wall rates in the text); a missing peer says why."""
    prep_wall, prep_cpu = row["rates"]["prep"]
    ours = f"{prep_cpu:.0f} frames/CPU-s, wall {prep_wall:.0f}/s"
    for name, (wall, cpu) in row["rates"].items():
        if name == "prep" or (only and not name.startswith(only)):
            continue
        record(
            "decode",
            f"{row['case']}, per CPU second vs {name}",
            ours,
            f"{name}: {cpu:.0f} frames/CPU-s, wall {wall:.0f}/s",
            prep_cpu / cpu,
            f">= {goal}",
        )
    for name, reason in row["missing"].items():
        if not only:
            record("decode", f"{row['case']} vs {name}", ours, f"{name}: {reason}", None, None)


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


def bench_videos(tmp: Path, frames: int, repeats: int) -> None:
    """The synthetic clip (against ffmpeg, as before) and, with ../shared, the two real clips
    (against every peer)."""
    rows = [bench_peers(make_h264_clip(tmp / "clip.mp4", frames), "video h264", repeats)]
    if HAND_CLIP.is_file():
        real = make_real_clip(tmp / "real.mp4")
        mpeg4 = make_mpeg4_clip(tmp / "mpeg4.mp4", real)
        rows.append(bench_peers(real, "video h264, real hand clip x10,", repeats))
        label = "video MPEG-4 Part 2 (stands in for AUTSL), real hand clip x10 re-encoded,"
        rows.append(bench_peers(mpeg4, label, repeats))
    else:
        print(f"{HAND_CLIP} not found: real-content video comparison skipped")
    print(f"cores: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, best of {repeats} rounds")
    for row in rows:
        print_peers(row)
    record_peers(rows[0], 0.9, only=("ffmpeg",))
    for row in rows[1:]:
        record_peers(row, 1.0)


def bench_folders(tmp: Path, frames: int, repeats: int) -> None:
    write_folder(tmp / "png", frames, (210, 260), "images{:04d}.png")
    write_folder(tmp / "jpg", frames // 2, (512, 512), "{:06d}.jpg")
    rows = [
        bench_folder(tmp / "png", repeats, f"PNG folder 210x260, {frames} frames"),
        bench_folder(tmp / "jpg", repeats, f"JPEG folder 512x512, {frames // 2} frames"),
    ]
    print(
        "\n| case | prep frames/s | baseline | baseline frames/s | wall ratio | per-CPU-second ratio | goal |"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", type=int, default=600, help="frames of the synthetic clip and folders"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("video", "folders"), help="one half of the benchmark")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.only != "folders":
            if shutil.which("ffmpeg"):
                bench_videos(tmp, args.frames, args.repeats)
            else:
                print("ffmpeg not found: video comparison skipped (apt-get install ffmpeg)")
                record("decode", "video", "not measured", "ffmpeg not found", None, None)
        if args.only != "video":
            bench_folders(tmp, args.frames, args.repeats)


if __name__ == "__main__":
    main()
