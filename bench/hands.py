"""Hand features benchmarks, side by side in one run:

1. Hand detection frames/s (MediaPipe Hands in video mode, with and without the pose
   fallback) on the real 540x720 hand clip (../shared/data/hand_clip.mp4), looped.
2. HaMeR crops/s through the features adapter (uint8 crops in, normalisation, left-hand
   mirroring, 288-d rows out) vs the bare model forward on the same, already normalised
   batch, at several batch sizes. Goal: adapter/bare time <= 1.15. The model is a ViT-B-sized
   HaMeR with random weights (the released ViT-H is too slow for this 2-core CPU; the wrapper's
   cost does not depend on the model, so a larger model only lowers the ratio).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import record

REPO = Path(__file__).resolve().parents[1]
HAND_CLIP = REPO.parent / "shared" / "data" / "hand_clip.mp4"


def detection_rate(frames: np.ndarray, loops: int, pose_fallback: bool) -> tuple[float, float]:
    from pipeline.video import ChunkInfo
    from stages.hands.detect import HandDetector

    detector = HandDetector(pose_fallback=pose_fallback)
    detector.detect(
        frames[:1], ChunkInfo(-1, None, np.arange(1))
    )  # graph start-up is not per frame
    started = time.perf_counter()
    found = 0
    for loop in range(loops):
        for begin in range(0, len(frames), 16):
            rows = detector.detect(
                frames[begin : begin + 16], ChunkInfo(loop, None, np.arange(begin, begin + 16))
            )
            found += int((rows[:, :, 0] > 0).any(axis=1).sum())
    seconds = time.perf_counter() - started
    return loops * len(frames) / seconds, found / (loops * len(frames))


def vit_b_hamer(folder: Path) -> tuple[Path, Path]:
    import json

    from safetensors.torch import save_file

    from stages.hands.hamer import BackboneConfig, Hamer, HamerConfig, HeadConfig

    config = HamerConfig(
        BackboneConfig(embed_dim=768, depth=12, num_heads=12), HeadConfig(context_dim=768)
    )
    torch.manual_seed(0)
    model = Hamer(config)
    weights, config_file = folder / "hamer-vitb.safetensors", folder / "hamer-vitb.json"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    config_file.write_text(json.dumps(config.as_dict()))
    return weights, config_file


def hamer_overhead(weights: Path, config: Path, batch_sizes: list[int], repeats: int) -> list[dict]:
    from stages.hands.detect import HandDetector
    from stages.hands.encoders import HamerEncoder, HandCrops, normalise

    encoder = HamerEncoder(
        HandDetector(),
        str(weights),
        str(config),
        device="cpu",
        precision="fp32",
        crop_batch=max(batch_sizes),
    )
    encoder.load()
    rng = np.random.default_rng(0)
    results = []
    for size in batch_sizes:
        frames = (
            size + 1
        ) // 2  # both slots filled: one left (mirrored) and one right hand per frame
        crops = HandCrops(
            torch.from_numpy(rng.integers(0, 255, (frames, 2, 256, 256, 3), dtype=np.uint8)),
            torch.ones(frames, 2, dtype=torch.bool),
        )
        images = normalise(crops.crops.reshape(-1, 256, 256, 3), torch.float32)
        encoder(crops)  # warm-up
        bare, wrapped = [], []
        for _ in range(repeats):  # interleaved: the machine is shared and noisy
            started = time.perf_counter()
            with torch.inference_mode():
                encoder.model(images)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            encoder(crops)
            wrapped.append(time.perf_counter() - started)
        n = len(images)
        results.append(
            {
                "batch": n,
                "bare_per_s": n / min(bare),
                "adapter_per_s": n / min(wrapped),
                "ratio": min(wrapped) / min(bare),
            }
        )
    return results


def crop_rate(frames: np.ndarray) -> float:
    from stages.hands.encoders import hand_crop

    box = np.array([100, 150, 260, 330], np.float32)
    started = time.perf_counter()
    for frame in frames:
        hand_crop(frame, box, mirror=False)
        hand_crop(frame, box, mirror=True)
    return 2 * len(frames) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=3)
    parser.add_argument("--batch-sizes", default="2,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from pipeline.video import open_source

    sys.path.insert(0, str(REPO))  # tests.frames: the whole-clip decode the tests use too
    from tests.frames import decode_clip

    frames = decode_clip(open_source(HAND_CLIP)).frames
    for fallback in (False, True):
        rate, share = detection_rate(frames, args.loops, fallback)
        print(
            f"hand detection (pose fallback {'on' if fallback else 'off'}): {rate:.1f} frames/s on 540x720, "
            f"a hand in {share:.0%} of frames"
        )
        record(
            "hands",
            f"MediaPipe Hands, video mode, pose fallback {'on' if fallback else 'off'}",
            f"{rate:.1f} frames/s, a hand in {share:.0%} of frames",
            None,
            None,
            None,
        )
    crops_per_s = crop_rate(frames)
    print(f"crop extraction: {crops_per_s:.0f} crops/s (in the decode threads)")
    record(
        "hands",
        "HaMeR crop extraction (warpAffine to 256x256)",
        f"{crops_per_s:.0f} crops/s",
        None,
        None,
        None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        weights, config = vit_b_hamer(Path(tmp))
        for row in hamer_overhead(
            weights, config, [int(x) for x in args.batch_sizes.split(",")], args.repeats
        ):
            print(
                f"HaMeR (ViT-B-sized, CPU) batch {row['batch']:>3}: bare {row['bare_per_s']:.1f} crops/s, "
                f"adapter {row['adapter_per_s']:.1f} crops/s; ratio {row['ratio']:.2f} (goal <= 1.15)"
            )
            record(
                "hands",
                f"HaMeR adapter vs bare forward, ViT-B-sized, CPU, batch {row['batch']}",
                f"{row['adapter_per_s']:.1f} crops/s",
                f"{row['bare_per_s']:.1f} crops/s",
                row["ratio"],
                "<= 1.15",
            )


if __name__ == "__main__":
    main()
