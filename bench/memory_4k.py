"""Peak memory of the features stage on 4K video, with default options.

Four 3840x2160 h264 clips (written here with PyAV's libx264) through ``prep run --stage
features`` (tiny random DINOv2, default decode workers and batch size) in a child process;
its peak RSS against the 3 GiB budget (goal <= 1.0), and beside it the same run on four
Phoenix14T-sized clips, so the figure says what 4K itself costs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import record

from pipeline import synthetic

REPO = Path(__file__).resolve().parents[1]
BUDGET_MIB = 3 * 1024
SIZE_4K = (3840, 2160)


def peak_rss_mib(args: list[str]) -> float:
    """Peak RSS of ``args`` run as a grandchild (only it is counted)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, cwd=REPO
    )
    return int(done.stdout.strip()) / 1024


def corpus(folder: Path, clips: int, frames: int, size: tuple[int, int]) -> Path:
    """A generic CSV of ``clips`` h264 clips of the synthetic signer at ``size``."""
    (folder / "clips").mkdir(parents=True)
    rows = ["id,path,text,language,split"]
    for number in range(clips):
        name = f"clip{number}"
        synthetic.write_h264(
            folder / "clips" / f"{name}.mp4",
            synthetic.render_frames(frames, *size, name),
            25,
            crf=28,
        )
        rows.append(f"{name},clips/{name}.mp4,ein satz,de,train")
    (folder / "corpus.csv").write_text("\n".join(rows) + "\n")
    return folder / "corpus.csv"


def stage_peak(
    work: Path, name: str, clips: int, frames: int, size: tuple[int, int], model: Path
) -> float:
    csv = corpus(work / name, clips, frames, size)
    out = work / f"{name}-out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--stage",
            "manifest",
            "--dataset",
            "generic",
            "--root",
            str(csv),
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
        cwd=REPO,
    )
    return peak_rss_mib(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--stage",
            "features",
            "--dataset",
            "generic",
            "--root",
            str(csv),
            "--out",
            str(out),
            "--dinov2",
            str(model),
            "--quiet",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    args = parser.parse_args()
    from stages.features.demo import write_tiny_dinov2

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = write_tiny_dinov2(work / "tiny")
        small = stage_peak(work, "small", args.clips, args.frames, (210, 260), model)
        large = stage_peak(work, "4k", args.clips, args.frames, SIZE_4K, model)
    print(
        f"peak RSS of the features stage, {args.clips} clips x {args.frames} frames, default options:"
    )
    print(f"  210x260:   {small:.0f} MiB")
    print(
        f"  3840x2160: {large:.0f} MiB (budget {BUDGET_MIB} MiB, ratio {large / BUDGET_MIB:.2f}, goal <= 1.0)"
    )
    record(
        "memory_4k",
        f"peak RSS of the features stage, {args.clips} 4K clips x {args.frames} frames, defaults",
        f"{large:.0f} MiB",
        f"budget {BUDGET_MIB} MiB (210x260 clips: {small:.0f} MiB)",
        large / BUDGET_MIB,
        "<= 1.0",
    )


if __name__ == "__main__":
    main()
