"""Hand-captions batching benchmark: chunks/s and generated tokens/s of the transformers
captioner with chunks batched across clips vs one chunk per ``generate`` call, side by side in
one run, on the same tiny random Qwen2-VL (grid mode, BeyondGloss's prompt, 16-frame chunks of
Phoenix-sized 210x260 frames). Goal: batched/unbatched chunks/s >= 3.

Rounds alternate between the two settings so that the machine's noise hits both alike. A real
7B VideoLLM on a GPU gains from batching for the same reason (one weight read serves the whole
batch); on a CPU a large model is compute-bound and gains less.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import REPO, record

sys.path.insert(0, str(REPO))  # tests.tiny_models: the tiny random Qwen2-VL the tests use too

from stages.hand_captions import HandCaptionsOptions
from stages.hand_captions.captioners import ChunkRequest
from stages.hand_captions.vlm import TransformersCaptioner
from tests.tiny_models import write_tiny_qwen2vl


def chunk_requests(count: int, seed: int = 0) -> list[ChunkRequest]:
    """Chunks of smooth moving images (random noise would be unlike video)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:260, 0:210]
    requests = []
    for c in range(count):
        phase = rng.uniform(0, 6.28)
        frames = np.stack(
            [
                (127 + 120 * np.sin(x / 17 + y / 23 + phase + t / 3))[..., None].repeat(3, -1)
                for t in range(16)
            ]
        )
        requests.append(
            ChunkRequest(
                (f"clip{c // 4}", c % 4), list(range(16)), 25.0, 210, 260, frames.astype(np.uint8)
            )
        )
    return requests


def rate(
    captioner: TransformersCaptioner, requests: list[ChunkRequest], batch: int
) -> tuple[float, float]:
    """(chunks/s, generated tokens/s) captioning ``requests`` ``batch`` at a time."""
    started, tokens = time.perf_counter(), 0
    for begin in range(0, len(requests), batch):
        tokens += sum(c.tokens for c in captioner(requests[begin : begin + batch]))
    seconds = time.perf_counter() - started
    return len(requests) / seconds, tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_qwen2vl(Path(tmp) / "qwen2vl-tiny")
        options = HandCaptionsOptions(
            captioner="transformers", captioner_model=str(model), max_new_tokens=args.max_new_tokens
        )
        captioner = TransformersCaptioner(options)
        requests = chunk_requests(args.chunks)
        rate(captioner, requests[: args.batch], args.batch)  # warm-up: load, first calls
        results = {1: [], args.batch: []}
        for _ in range(args.rounds):
            for batch in results:
                results[batch].append(rate(captioner, requests, batch))
    single, batched = (np.median(np.array(results[b]), axis=0) for b in (1, args.batch))
    ratio = batched[0] / single[0]
    print(f"one chunk per generate: {single[0]:.1f} chunks/s, {single[1]:.0f} tokens/s")
    print(
        f"batches of {args.batch}:      {batched[0]:.1f} chunks/s, {batched[1]:.0f} tokens/s; ratio {ratio:.2f} (goal >= 3)"
    )
    record(
        "captions",
        f"transformers captioner, tiny Qwen2-VL, grid mode, batches of {args.batch} vs 1 chunk per call",
        f"{batched[0]:.1f} chunks/s, {batched[1]:.0f} tokens/s",
        f"{single[0]:.1f} chunks/s, {single[1]:.0f} tokens/s",
        ratio,
        ">= 3",
    )


if __name__ == "__main__":
    main()
