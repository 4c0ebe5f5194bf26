"""Features stage benchmarks, each measured side by side in one run:

1. Stage overhead: wall time of the features stage vs (decode time + model forward time)
   measured separately on the same clips. A ViT-S/14-sized DINOv2 (random weights, the real
   architecture and cost) on synthetic Phoenix14T-layout clips (210x260 PNG frames).
   Goal <= 1.0 (decoding overlaps inference), never above 1.15.
2. Loader: samples/s of ``pipeline.loader`` (decode + pad + collate) vs iterating the same
   shards with plain ``tarfile`` + ``np.load``. Goal >= 0.9.
3. Memory: peak RSS of the stage for 50 vs 500 clips (tiny model). Goal <= 1.2x.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import record

from pipeline import synthetic

REPO = Path(__file__).resolve().parents[1]


def vit_small(folder: Path) -> Path:
    """DINOv2 ViT-S/14's configuration (facebook/dinov2-small) with random weights."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        patch_size=14,
        image_size=518,
    )
    Dinov2Model(config).save_pretrained(folder)
    return folder


def corpus(folder: Path, clips: int, frames: tuple[int, int]) -> Path:
    return synthetic.write_phoenix14t(folder, synthetic.default_samples("de", clips, frames))


def cli(*args: object) -> None:
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stage_overhead(work: Path, clips: int, batch_size: int) -> dict:
    from pipeline.config import RunConfig
    from pipeline.runner import run_stage
    from pipeline.video import open_source
    from stages.features import FeaturesOptions, FeaturesStage

    sys.path.insert(0, str(REPO))  # tests.frames: the whole-clip decode the tests use too
    from tests.frames import decode_clip

    root = corpus(work / "corpus", clips, (30, 50))
    model = vit_small(work / "vits14")
    out = work / "out"
    cli(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "phoenix14t",
        "--root",
        root,
        "--out",
        out,
        "--quiet",
    )
    run = RunConfig(dataset="phoenix14t", root=root, out=out, quiet=True)
    stage = FeaturesStage(
        FeaturesOptions(dinov2=str(model), batch_size=batch_size, device="cpu"), run
    )
    planned = stage.plan()
    rows = [row for unit in planned.units for row in unit.items]
    encoder = stage.encoders["dinov2"]
    encoder.load()

    started = time.perf_counter()
    decoded = [
        decode_clip(
            open_source(planned.context.base_dir / r["source_path"], r["fps"], threads=2)
        ).frames
        for r in rows
    ]
    decode_s = time.perf_counter() - started
    frames = np.concatenate(decoded)
    prepared = [
        encoder.host_prepare(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)
    ]
    encoder(prepared[0])  # warm-up, as the stage's first batch is not special either
    started = time.perf_counter()
    for batch in prepared:
        encoder(batch)
    forward_s = time.perf_counter() - started

    started = time.perf_counter()
    run_stage(stage)
    stage_s = time.perf_counter() - started
    return {
        "clips": len(rows),
        "frames": len(frames),
        "decode_s": decode_s,
        "forward_s": forward_s,
        "stage_s": stage_s,
        "ratio": stage_s / (decode_s + forward_s),
    }


def loader_speed(work: Path, samples: int) -> dict:
    """Shards of ViT-S-shaped features (float16 [T, 384], T in 50..200) with realistic json."""
    from pipeline.loader import make_loader
    from pipeline.shards import ShardWriter, encode_json, encode_npy, iter_tar_samples, wids_index
    from pipeline.storage import atomic_write_json

    folder = work / "shards" / "train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with ShardWriter(folder, "train", 64 * 10**6) as writer:
        for i in range(samples):
            length = int(rng.integers(50, 200))
            meta = {
                "id": f"clip{i:06d}",
                "translation": "und nun die wettervorhersage " * 3,
                "num_frames": length,
                "frame_indices": list(range(length)),
                "fields": {"dinov2.npy": {"dtype": "float16", "shape": [length, 384]}},
            }
            writer.write(
                meta["id"],
                {
                    "json": encode_json(meta),
                    "dinov2.npy": encode_npy(rng.standard_normal((length, 384)).astype(np.float16)),
                },
            )
    entries = [s.as_dict() for s in writer.shards]
    atomic_write_json(folder / "index.json", wids_index("train", entries, {"samples": samples}))

    def raw() -> int:
        count = 0
        for shard in writer.shards:
            for _key, fields in iter_tar_samples(shard.path):
                np.load(io.BytesIO(fields["dinov2.npy"]), allow_pickle=False)
                json.loads(fields["json"])
                count += 1
        return count

    def ours() -> int:
        loader = make_loader(work, "train", batch_size=16, train=False, num_workers=0)
        return sum(len(batch["__key__"]) for batch in loader)

    timings = {"raw": [], "loader": []}
    for _ in range(3):  # interleaved, best of three: the machine is shared and noisy
        for name, fn in (("raw", raw), ("loader", ours)):
            started = time.perf_counter()
            assert fn() == samples
            timings[name].append(time.perf_counter() - started)
    raw_rate, loader_rate = samples / min(timings["raw"]), samples / min(timings["loader"])
    return {
        "samples": samples,
        "raw_per_s": raw_rate,
        "loader_per_s": loader_rate,
        "ratio": loader_rate / raw_rate,
    }


def peak_rss_mib(args: list[str]) -> float:
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, cwd=REPO
    )
    return int(done.stdout.strip()) / 1024


def memory_growth(work: Path, small: int, large: int) -> dict:
    from stages.features.demo import write_tiny_dinov2

    model = write_tiny_dinov2(work / "tiny")
    result = {}
    for clips in (small, large):
        root = corpus(work / f"c{clips}", clips, (16, 40))
        out = work / f"o{clips}"
        cli(
            "run",
            "--stage",
            "manifest",
            "--dataset",
            "phoenix14t",
            "--root",
            root,
            "--out",
            out,
            "--quiet",
        )
        result[clips] = peak_rss_mib(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "run",
                "--stage",
                "features",
                "--dataset",
                "phoenix14t",
                "--root",
                str(root),
                "--out",
                str(out),
                "--dinov2",
                str(model),
                "--quiet",
            ]
        )
    return {
        "small": small,
        "large": large,
        "rss_small_mib": result[small],
        "rss_large_mib": result[large],
        "ratio": result[large] / result[small],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16, help="clips for the stage-overhead run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--loader-samples", type=int, default=2000)
    parser.add_argument("--memory-clips", default="50,500")
    parser.add_argument(
        "--only", default="overhead,loader,memory", help="comma list of benchmarks to run"
    )
    args = parser.parse_args()
    random.seed(0)
    chosen = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "overhead" in chosen:
            report_overhead(
                stage_overhead(work / "overhead", args.clips, args.batch_size), args.batch_size
            )
        if "loader" in chosen:
            report_loader(loader_speed(work / "loader", args.loader_samples))
        if "memory" in chosen:
            small, large = (int(x) for x in args.memory_clips.split(","))
            report_memory(memory_growth(work / "memory", small, large))


def report_overhead(overhead: dict, batch_size: int) -> None:
    print(
        f"stage overhead: {overhead['clips']} clips, {overhead['frames']} frames, ViT-S/14 on CPU, "
        f"batch {batch_size}: decode {overhead['decode_s']:.1f} s + forward {overhead['forward_s']:.1f} s "
        f"= {overhead['decode_s'] + overhead['forward_s']:.1f} s; stage {overhead['stage_s']:.1f} s; "
        f"ratio {overhead['ratio']:.2f} (goal <= 1.0, never > 1.15)"
    )
    record(
        "features",
        f"stage wall time vs decode + forward apart ({overhead['clips']} clips, "
        f"{overhead['frames']} frames, ViT-S/14 CPU, batch {batch_size})",
        f"{overhead['stage_s']:.1f} s",
        f"{overhead['decode_s']:.1f} s decode + {overhead['forward_s']:.1f} s forward",
        overhead["ratio"],
        "<= 1.0, never > 1.15",
    )


def report_loader(loader: dict) -> None:
    print(
        f"loader: {loader['samples']} samples: raw tarfile {loader['raw_per_s']:.0f}/s, "
        f"pipeline.loader {loader['loader_per_s']:.0f}/s; ratio {loader['ratio']:.2f} (goal >= 0.9)"
    )
    record(
        "features",
        f"loader samples/s ({loader['samples']} samples) vs tarfile + np.load",
        f"{loader['loader_per_s']:.0f}/s",
        f"{loader['raw_per_s']:.0f}/s",
        loader["ratio"],
        ">= 0.9",
    )


def report_memory(memory: dict) -> None:
    print(
        f"memory: peak RSS {memory['rss_small_mib']:.0f} MiB for {memory['small']} clips, "
        f"{memory['rss_large_mib']:.0f} MiB for {memory['large']}; ratio {memory['ratio']:.2f} (goal <= 1.2)"
    )
    record(
        "features",
        f"peak RSS of the stage, {memory['large']} vs {memory['small']} clips",
        f"{memory['rss_large_mib']:.0f} MiB",
        f"{memory['rss_small_mib']:.0f} MiB",
        memory["ratio"],
        "<= 1.2",
    )


if __name__ == "__main__":
    main()
