"""Stage ``hand-captions`` (BeyondGloss): each clip cut into short chunks, each chunk described
by a captioner (a VideoLLM through transformers or vLLM, or the offline kinematic describer),
the descriptions joined in time order, optionally refined by a text LLM, and embedded.

Outputs under ``<out>/hand-captions/``: ``<split>.parquet`` (per sample: ``hand_caption``,
``hand_caption_raw``, ``chunks``, ``caption_emb``), ``<split>.chunks.parquet``
(:data:`CHUNK_SCHEMA`), ``quarantine.parquet``, ``summary.json``. The features stage copies
``hand_caption`` into each sample's json and ``caption_emb`` into ``caption_emb.npy``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import manifest as m
from pipeline.devices import resolve_device
from pipeline.errors import PrepError
from pipeline.journal import UnitJournal
from pipeline.runner import Stage, WorkUnit, committed_units, config_hash, slice_units
from pipeline.storage import write_parquet
from pipeline.video import DecodeError, open_source
from stages.hand_captions.captioners import make_captioner
from stages.hand_captions.chunking import chunks_of, join_captions
from stages.hand_captions.embeddings import DEFAULT_ENCODER, SentenceEncoder
from stages.hand_captions.grid import pick_frames
from stages.hand_captions.work import (
    BatchedCaptioner,
    ClipUnreadable,
    ClipWork,
    chunk_requests,
    journaled_keys,
)

DECODE_FAILED = "decode_failed"
CHUNK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("chunk_index", pa.int32()),
        ("start_frame", pa.int32()),
        ("end_frame", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
        ("generated_tokens", pa.int32()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("revision", pa.string()),
        ("prompt_hash", pa.string()),
    ]
)
SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("hand_caption", pa.string()),
        ("hand_caption_raw", pa.string()),
        ("chunks", pa.int32()),
        ("caption_emb", pa.list_(pa.float32())),
    ]
)
UNIT_SAMPLES, UNIT_CHUNKS, UNIT_QUARANTINE = (
    "samples.parquet",
    "chunks.parquet",
    "quarantine.parquet",
)


@dataclass(frozen=True)
class HandCaptionsOptions:
    unit_size: int = 200
    captioner: str = "transformers"
    captioner_model: str | None = None
    captioner_input: str = "grid"
    prompt: str | None = None
    max_new_tokens: int = 512
    caption_batch_size: int = 8
    chunk_frames: int = 16
    chunk_stride: int | None = None
    chunk_sample_frames: int = 0
    refine_model: str | None = None
    refine_prompt: str | None = None
    text_encoder: str = DEFAULT_ENCODER
    device: str = "auto"
    precision: str = "auto"
    trust_remote_code: bool = False
    hand_confidence: float = 0.5
    pose_fallback: bool = True
    hands_mirrored: bool = False
    hand_keypoints: str | None = None


class HandCaptionsStage(Stage):
    name = "hand-captions"
    version = 3  # 3: chunk seconds from real frame times (variable frame rates)
    requires = ("manifest",)
    runtime_options = ("caption_batch_size",)

    def __init__(self, options: HandCaptionsOptions, run: Any) -> None:
        super().__init__(options, run)
        if options.chunk_frames < 1 or (
            options.chunk_stride is not None and options.chunk_stride < 1
        ):
            raise PrepError("--chunk-frames and --chunk-stride must be at least 1")
        if (
            options.max_new_tokens < 1
            or options.caption_batch_size < 1
            or options.chunk_sample_frames < 0
        ):
            raise PrepError(
                "--max-new-tokens and --caption-batch-size must be at least 1, --chunk-sample-frames at least 0"
            )
        self.device = resolve_device(options.device)
        self.captioner = make_captioner(options)
        self.detector = self._hand_detector() if self.captioner.needs_hands else None
        self.refiner = self._refiner() if options.refine_model else None
        wants_embedding = options.text_encoder.lower() != "none"
        self.encoder = SentenceEncoder(options.text_encoder) if wants_embedding else None

    def _hand_detector(self):
        from stages.hands.detect import HandDetector, require_mediapipe

        o = self.options
        keypoints = Path(o.hand_keypoints).expanduser().resolve() if o.hand_keypoints else None
        if keypoints is None:
            require_mediapipe()
        return HandDetector(
            min_confidence=o.hand_confidence,
            pose_fallback=o.pose_fallback,
            mirrored=o.hands_mirrored,
            keypoints=keypoints,
        )

    def _refiner(self):
        from stages.hand_captions.refine import CaptionRefiner

        return CaptionRefiner(self.options)

    def options_dict(self) -> dict[str, Any]:
        """The options plus what they resolve to: prompt hashes (a prompt file may change) and device kind."""
        identity = self.captioner.identity
        return {
            **asdict(self.options),
            "device": self.device.split(":")[0],
            "prompt_hash": identity.prompt_hash,
            "refine_prompt_hash": self.refiner.identity["prompt_hash"] if self.refiner else None,
        }

    def plan(self) -> list[WorkUnit]:
        splits = m.manifest_splits(self.layout)
        first = m.read_provenance(self.layout.split_table("manifest", splits[0]))
        self.base_dir = m.source_base(first, self.run_config.root)
        units = []
        for split in splits:
            rows = (
                m.read_table(self.layout.split_table("manifest", split))
                .select(["id", "source_path", "fps", "start", "end", "num_frames", "frame_timing"])
                .to_pylist()
            )
            units += slice_units(split, rows, self.options.unit_size)
        return units

    def run(self, unit: WorkUnit, workdir: Path) -> dict[str, int]:
        journal = UnitJournal(
            self.layout.unit_journal(self.name, unit.id),
            {"config": config_hash(self), "input": unit.fingerprint()},
        )
        done = journaled_keys(journal, "chunk")
        batcher = BatchedCaptioner(self.captioner, self.options.caption_batch_size, journal)
        clips, rejected, frames = [], [], 0
        for position, item in enumerate(unit.items):
            work = self._clip_work(position, item)
            clips.append(work)
            if all((item["id"], c.index) in done for c in work.chunks):
                continue  # captioned before a crash: not decoded again
            try:
                frames += self._caption_clip(work, done, batcher)
            except ClipUnreadable as exc:
                rejected.append(
                    m.quarantine_row(
                        item["id"],
                        unit.split,
                        self.run_config.dataset,
                        self.name,
                        DECODE_FAILED,
                        str(exc),
                        item["source_path"],
                    )
                )
                batcher.drop(item["id"])
        batcher.flush()
        rejected_ids = {r["id"] for r in rejected}
        clips = [c for c in clips if c.item["id"] not in rejected_ids]
        samples, chunk_rows = self._assemble(unit, clips, journaled_keys(journal, "chunk"))
        self._refine(samples, journal)
        self._embed(samples)
        write_parquet(m.to_table(samples, SAMPLE_SCHEMA), workdir / UNIT_SAMPLES)
        write_parquet(m.to_table(chunk_rows, CHUNK_SCHEMA), workdir / UNIT_CHUNKS)
        write_parquet(m.to_table(rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        return {
            "ok": len(samples),
            "quarantined": len(rejected),
            "frames": frames,
            "chunks": len(chunk_rows),
            "captioned": batcher.captioned,
            "generated_tokens": batcher.generated_tokens,
        }

    def _clip_work(self, position: int, item: dict[str, Any]) -> ClipWork:
        o = self.options
        chunks = chunks_of(
            item["num_frames"], item["fps"], o.chunk_frames, o.chunk_stride, self._frame_times(item)
        )
        picks = [pick_frames(c.start_frame, c.end_frame, o.chunk_sample_frames) for c in chunks]
        return ClipWork(position, item, chunks, picks)

    def _frame_times(self, item: dict[str, Any]) -> np.ndarray | None:
        """Real frame times of a clip whose clock is not constant (one demux pass, no decoding)."""
        if item.get("frame_timing") in (None, "constant"):
            return None
        try:
            source = open_source(
                self.base_dir / item["source_path"], item["fps"], item["start"], item["end"]
            )
        except DecodeError:
            return None  # reading it fails again, with its reason, when the clip is decoded
        return source.timestamps(range(source.num_frames))

    def _caption_clip(self, work: ClipWork, done: dict, batcher: BatchedCaptioner) -> int:
        item = work.item
        try:
            source = open_source(
                self.base_dir / item["source_path"],
                item["fps"],
                item["start"],
                item["end"],
                threads=2,
            )
        except (DecodeError, OSError) as exc:
            raise ClipUnreadable.because(exc) from exc
        if self.detector is not None:
            self.detector.load()
        detect = self.detector.detect if self.detector is not None else None
        for request in chunk_requests(work, source, self.captioner, detect):
            if request.key not in done:
                batcher.add(request)
        return source.num_frames

    def _assemble(
        self, unit: WorkUnit, clips: list[ClipWork], captions: dict
    ) -> tuple[list[dict], list[dict]]:
        samples, chunk_rows = [], []
        for work in clips:
            sample_id = work.item["id"]
            texts = [captions[(sample_id, c.index)]["text"] for c in work.chunks]
            tokens = [captions[(sample_id, c.index)]["tokens"] for c in work.chunks]
            chunk_rows += [
                self._chunk_row(sample_id, unit.split, c, t, n)
                for c, t, n in zip(work.chunks, texts, tokens)
            ]
            joined = join_captions(work.chunks, texts)
            samples.append(
                {
                    "id": sample_id,
                    "split": unit.split,
                    "hand_caption": joined,
                    "hand_caption_raw": joined,
                    "chunks": len(work.chunks),
                }
            )
        return samples, chunk_rows

    def _refine(self, samples: list[dict], journal: UnitJournal) -> None:
        """Rewrite each joined description with the text LLM, batch by batch, journaled."""
        if self.refiner is None:
            return
        refined = journaled_keys(journal, "refined")
        todo = [s for s in samples if s["id"] not in refined]
        size = self.options.caption_batch_size
        for begin in range(0, len(todo), size):
            batch = todo[begin : begin + size]
            texts = self.refiner([s["hand_caption_raw"] for s in batch])
            journal.append(
                {"kind": "refined", "key": s["id"], "text": t} for s, t in zip(batch, texts)
            )
        refined = journaled_keys(journal, "refined")
        for sample in samples:
            sample["hand_caption"] = refined[sample["id"]]["text"]

    def _embed(self, samples: list[dict]) -> None:
        if self.encoder is not None and samples:
            for sample, vector in zip(samples, self.encoder([s["hand_caption"] for s in samples])):
                sample["caption_emb"] = [float(v) for v in vector]

    def _chunk_row(
        self, sample_id: str, split: str, chunk, text: str, tokens: int
    ) -> dict[str, Any]:
        identity = self.captioner.identity
        return {
            "id": sample_id,
            "split": split,
            "chunk_index": chunk.index,
            "start_frame": chunk.start_frame,
            "end_frame": chunk.end_frame,
            "start_s": chunk.start_s,
            "end_s": chunk.end_s,
            "text": text,
            "generated_tokens": tokens,
            "backend": identity.backend,
            "model": identity.model,
            "revision": identity.revision,
            "prompt_hash": identity.prompt_hash,
        }

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
            write_parquet(
                m.to_table(samples[split], SAMPLE_SCHEMA, meta),
                self.layout.split_table(self.name, split),
            )
            write_parquet(
                m.to_table(chunks[split], CHUNK_SCHEMA, meta),
                self.layout.stage_dir(self.name) / f"{split}.chunks.parquet",
            )
            reasons = Counter(q["reason"] for q in quarantine if q["split"] == split)
            splits[split] = {
                "samples": len(samples[split]),
                "chunks": len(chunks[split]),
                "quarantined": dict(sorted(reasons.items())),
            }
        write_parquet(
            m.to_table(quarantine, m.QUARANTINE_SCHEMA, meta),
            self.layout.quarantine_table(self.name),
        )
        return {
            "splits": splits,
            "outputs": str(self.layout.stage_dir(self.name)),
            "captioner": meta["captioner"],
        }

    def _provenance(self) -> dict[str, Any]:
        meta = m.provenance(self.name, self.version, self.options_dict())
        captioner = asdict(self.captioner.identity)
        if self.detector is not None:
            captioner["hands"] = self.detector.source
        meta.update(
            {
                "dataset": self.run_config.dataset,
                "captioner": captioner,
                "refiner": self.refiner.identity if self.refiner else None,
                "text_encoder": None
                if self.encoder is None
                else {
                    "model": self.encoder.reference,
                    "revision": self.encoder.revision(),
                    "pooling": "mean, L2",
                },
            }
        )
        return meta
