"""Stage ``hand-captions`` (BeyondGloss): each clip cut into short chunks, each chunk described
(hand position, movement, opening), the descriptions joined in time order, and the joined
description embedded with a sentence encoder.

Outputs under ``<out>/hand-captions/``: ``<split>.parquet`` (per sample: ``hand_caption``,
``chunks``, ``caption_emb``), ``<split>.chunks.parquet`` (:data:`CHUNK_SCHEMA`),
``quarantine.parquet``, ``summary.json``. The features stage copies ``hand_caption`` into each
sample's json and ``caption_emb`` into ``caption_emb.npy`` when this stage ran first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.runner import Stage, WorkUnit, committed_units, slice_units
from pipeline.storage import write_parquet
from pipeline.video import ChunkInfo, DecodeError, FrameSelection, iter_clip, open_source
from stages.hand_captions.chunking import chunks_of, join_captions
from stages.hand_captions.embeddings import DEFAULT_ENCODER, SentenceEncoder
from stages.hand_captions.kinematic import VERSION as KINEMATIC_VERSION
from stages.hand_captions.kinematic import describe_chunk

DECODE_FAILED = "decode_failed"
CAPTIONERS = ("kinematic",)
PLANNED_CAPTIONERS = ("transformers", "vllm")
CHUNK_SCHEMA = pa.schema(
    [("id", pa.string()), ("split", pa.string()), ("chunk_index", pa.int32()), ("start_frame", pa.int32()),
     ("end_frame", pa.int32()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("text", pa.string()),
     ("generated_tokens", pa.int32()), ("backend", pa.string()), ("model", pa.string()), ("revision", pa.string()),
     ("prompt_hash", pa.string())]
)  # fmt: skip
SAMPLE_SCHEMA = pa.schema(
    [("id", pa.string()), ("split", pa.string()), ("hand_caption", pa.string()), ("chunks", pa.int32()),
     ("caption_emb", pa.list_(pa.float32()))]
)  # fmt: skip
UNIT_SAMPLES, UNIT_CHUNKS, UNIT_QUARANTINE = "samples.parquet", "chunks.parquet", "quarantine.parquet"


@dataclass(frozen=True)
class HandCaptionsOptions:
    unit_size: int = 200
    captioner: str = "kinematic"
    chunk_frames: int = 16
    chunk_stride: int | None = None
    text_encoder: str = DEFAULT_ENCODER
    hand_confidence: float = 0.5
    pose_fallback: bool = True
    hands_mirrored: bool = False
    hand_keypoints: str | None = None


class HandCaptionsStage(Stage):
    name = "hand-captions"
    version = 1
    requires = ("manifest",)

    def __init__(self, options: HandCaptionsOptions, run: Any) -> None:
        super().__init__(options, run)
        if options.captioner in PLANNED_CAPTIONERS:
            raise PrepError(f"--captioner {options.captioner} is not available in this version; use kinematic")
        if options.captioner not in CAPTIONERS:
            raise PrepError(f"--captioner must be one of {', '.join(CAPTIONERS)}, got {options.captioner!r}")
        if options.chunk_frames < 1 or (options.chunk_stride is not None and options.chunk_stride < 1):
            raise PrepError("--chunk-frames and --chunk-stride must be at least 1")
        from stages.hands.detect import HandDetector, require_mediapipe

        keypoints = Path(options.hand_keypoints).expanduser().resolve() if options.hand_keypoints else None
        if keypoints is None:
            require_mediapipe()
        self.detector = HandDetector(min_confidence=options.hand_confidence, pose_fallback=options.pose_fallback,
                                     mirrored=options.hands_mirrored, keypoints=keypoints)  # fmt: skip
        wants_embedding = options.text_encoder.lower() != "none"
        self.encoder = SentenceEncoder(options.text_encoder) if wants_embedding else None

    def plan(self) -> list[WorkUnit]:
        splits = m.manifest_splits(self.layout)
        self.base_dir = Path(m.read_provenance(self.layout.split_table("manifest", splits[0])).get("base_dir", self.run_config.root))
        units = []
        for split in splits:
            rows = m.read_table(self.layout.split_table("manifest", split)).select(
                ["id", "source_path", "fps", "start", "end", "num_frames"]).to_pylist()  # fmt: skip
            units += slice_units(split, rows, self.options.unit_size)
        return units

    def run(self, unit: WorkUnit, workdir: Path) -> dict[str, int]:
        self.detector.load()
        samples, chunk_rows, rejected, frames = [], [], [], 0
        for position, item in enumerate(unit.items):
            try:
                source = open_source(self.base_dir / item["source_path"], item["fps"], item["start"], item["end"], threads=2)
                parts = [self.detector.detect(clip.frames, ChunkInfo(position, item, clip.indices))
                         for clip in iter_clip(source, FrameSelection(), 64)]  # fmt: skip
            except (DecodeError, OSError, RuntimeError, ValueError) as exc:
                detail = " ".join(str(exc).split()) or type(exc).__name__
                rejected.append(m.quarantine_row(item["id"], unit.split, self.run_config.dataset, self.name,
                                                 DECODE_FAILED, detail, item["source_path"]))  # fmt: skip
                continue
            hands = np.concatenate(parts)
            frames += len(hands)
            chunks = chunks_of(len(hands), item["fps"], self.options.chunk_frames, self.options.chunk_stride)
            texts = [describe_chunk(hands[c.start_frame : c.end_frame], source.width, source.height, item["fps"]) for c in chunks]
            chunk_rows += [self._chunk_row(item["id"], unit.split, c, t) for c, t in zip(chunks, texts)]
            samples.append({"id": item["id"], "split": unit.split, "hand_caption": join_captions(chunks, texts),
                            "chunks": len(chunks)})  # fmt: skip
        if self.encoder is not None and samples:
            for sample, vector in zip(samples, self.encoder([s["hand_caption"] for s in samples])):
                sample["caption_emb"] = [float(v) for v in vector]
        write_parquet(m.to_table(samples, SAMPLE_SCHEMA), workdir / UNIT_SAMPLES)
        write_parquet(m.to_table(chunk_rows, CHUNK_SCHEMA), workdir / UNIT_CHUNKS)
        write_parquet(m.to_table(rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        return {"ok": len(samples), "quarantined": len(rejected), "frames": frames, "chunks": len(chunk_rows)}

    def _chunk_row(self, sample_id: str, split: str, chunk, text: str) -> dict[str, Any]:
        return {"id": sample_id, "split": split, "chunk_index": chunk.index, "start_frame": chunk.start_frame,
                "end_frame": chunk.end_frame, "start_s": chunk.start_s, "end_s": chunk.end_s, "text": text,
                "generated_tokens": len(text.split()), "backend": self.options.captioner, "model": KINEMATIC_VERSION,
                "revision": KINEMATIC_VERSION, "prompt_hash": None}  # fmt: skip

    def finalize(self, units: list[WorkUnit]) -> dict[str, Any]:
        samples: dict[str, list] = defaultdict(list)
        chunks: dict[str, list] = defaultdict(list)
        quarantine: list[dict] = []
        for unit, folder in committed_units(self, units):
            samples[unit.split] += m.read_table(folder / UNIT_SAMPLES).to_pylist()
            chunks[unit.split] += m.read_table(folder / UNIT_CHUNKS).to_pylist()
            quarantine += m.read_table(folder / UNIT_QUARANTINE).to_pylist()
        meta = self._provenance()
        splits = {}
        for split in sorted({u.split for u in units}, key=m.split_order):
            write_parquet(m.to_table(samples[split], SAMPLE_SCHEMA, meta), self.layout.split_table(self.name, split))
            write_parquet(m.to_table(chunks[split], CHUNK_SCHEMA, meta), self.layout.stage_dir(self.name) / f"{split}.chunks.parquet")
            reasons = Counter(q["reason"] for q in quarantine if q["split"] == split)
            splits[split] = {"samples": len(samples[split]), "chunks": len(chunks[split]),
                             "quarantined": dict(sorted(reasons.items()))}  # fmt: skip
        write_parquet(m.to_table(quarantine, m.QUARANTINE_SCHEMA, meta), self.layout.quarantine_table(self.name))
        return {"splits": splits, "outputs": str(self.layout.stage_dir(self.name)), "captioner": meta["captioner"]}

    def _provenance(self) -> dict[str, Any]:
        meta = m.provenance(self.name, self.version, self.options_dict())
        meta.update({"dataset": self.run_config.dataset, "captioner": {"backend": self.options.captioner,
                     "model": KINEMATIC_VERSION, "hands": self.detector.source},
                     "text_encoder": None if self.encoder is None else
                     {"model": self.encoder.reference, "revision": self.encoder.revision(), "pooling": "mean, L2"}})  # fmt: skip
        return meta
