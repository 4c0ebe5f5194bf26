"""Stage ``features``: per-frame DINOv2 features packed with each clip's metadata into
WebDataset tar shards that training jobs stream.

Outputs: ``<out>/shards/<split>/<split>-<rank>-<NNNNNN>.tar`` with ``index.json`` (wids
format plus sha256, bytes and per-field stats per shard), ``<out>/features/quarantine.parquet``
and ``summary.json``. One sample per clip: ``json``, ``dinov2.npy`` (float16 ``[T, D]``) and,
with ``--with-frames``, ``frame_NNNNN.jpg`` (the clip at ``frame_size``², one JPEG per frame).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline import manifest as m
from pipeline.devices import resolve_device, torch_dtype
from pipeline.errors import PrepError
from pipeline.runner import Stage, WorkUnit, committed_units, slice_units
from pipeline.shards import ShardWriter, encode_json, encode_npy, parse_size, sample_key
from pipeline.storage import atomic_write_json, write_parquet
from pipeline.video import DecodeError, FrameSelection, open_source
from stages.features.dinov2 import Dinov2Encoder
from stages.features.extract import ExtractedClip, extract_clips
from stages.features.publish import publish_split
from stages.features.sample import (
    FrameJpegs,
    annotated_rows,
    annotation_arrays,
    frame_field,
    sample_json,
)

DECODE_FAILED = "decode_failed"
FEATURE_COUNT_MISMATCH = "feature_count_mismatch"
UNIT_SHARDS = "shards.json"
UNIT_QUARANTINE = "quarantine.parquet"
KNOWN_FEATURES = ("dinov2", "hands", "hamer")
FULL_PRECISION_FIELDS = {"hands.npy"}  # pixel coordinates: float16 would round them


@dataclass(frozen=True)
class FeaturesOptions:
    features: str = "dinov2"
    dinov2: str = "facebook/dinov2-small"
    dinov2_pooling: str = "cls"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    decode_workers: int = 4
    shard_size: str = "1GB"
    shard_clips: int = 512
    with_frames: bool = False
    frame_size: int = 256
    jpeg_quality: int = 90
    hamer: str | None = None
    hamer_config: str | None = None
    hand_confidence: float = 0.5
    pose_fallback: bool = True
    hands_mirrored: bool = False
    hamer_tokens: bool = False
    hand_keypoints: str | None = None

    def feature_list(self) -> list[str]:
        names = [n.strip() for n in self.features.split(",") if n.strip()]
        unknown = [n for n in names if n not in KNOWN_FEATURES]
        if unknown or not names:
            raise PrepError(
                f"--features takes a comma list of {', '.join(KNOWN_FEATURES)}; got {self.features!r}"
            )
        return names


class FeaturesStage(Stage):
    name = "features"
    version = 2  # 2: frame_times in every sample's json
    requires = ("manifest",)
    runtime_options = ("decode_workers",)

    def __init__(self, options: FeaturesOptions, run: Any) -> None:
        super().__init__(options, run)
        self._frame_times: dict[
            str, np.ndarray
        ] = {}  # clip id -> stored frames' seconds, set at decode
        for name, value in (
            ("batch-size", options.batch_size),
            ("shard-clips", options.shard_clips),
            ("decode-workers", options.decode_workers),
            ("frame-size", options.frame_size),
        ):
            if value < 1:
                raise PrepError(f"--{name} must be at least 1, got {value}")
        self.max_shard_bytes = parse_size(options.shard_size)
        self.device = resolve_device(options.device)
        torch_dtype(options.precision, self.device)  # validates the choice early
        self.encoders = {name: self._encoder(name) for name in options.feature_list()}

    def _encoder(self, name: str):
        o = self.options
        if name == "dinov2":
            return Dinov2Encoder(
                o.dinov2, pooling=o.dinov2_pooling, device=self.device, precision=o.precision
            )
        from stages.hands.detect import HandDetector, require_mediapipe
        from stages.hands.encoders import HamerEncoder, HandsEncoder

        keypoints = Path(o.hand_keypoints).expanduser().resolve() if o.hand_keypoints else None
        if keypoints is None:
            require_mediapipe()
        elif not keypoints.is_dir():
            raise PrepError(
                f"--hand-keypoints {o.hand_keypoints}: no such folder (one <id>.npy per clip)"
            )
        if not hasattr(self, "_detector"):  # one detector: hamer reuses what hands found
            self._detector = HandDetector(
                min_confidence=o.hand_confidence,
                pose_fallback=o.pose_fallback,
                mirrored=o.hands_mirrored,
                keypoints=keypoints,
            )
        if name == "hands":
            return HandsEncoder(self._detector)
        return HamerEncoder(
            self._detector,
            o.hamer,
            o.hamer_config,
            device=self.device,
            precision=o.precision,
            tokens=o.hamer_tokens,
        )

    def options_dict(self) -> dict[str, Any]:
        """Options with ``auto`` resolved: a CPU run and a GPU run give different numbers."""
        return {
            **asdict(self.options),
            "device": self.device.split(":")[0],
            "precision": str(torch_dtype(self.options.precision, self.device)).removeprefix(
                "torch."
            ),
        }

    # -- plan -----------------------------------------------------------------------------
    def plan(self) -> list[WorkUnit]:
        splits = m.manifest_splits(self.layout)
        first = m.read_provenance(self.layout.split_table("manifest", splits[0]))
        self.base_dir = m.source_base(first, self.run_config.root)
        self.selection = FrameSelection(**first.get("frame_selection", {}))
        units = []
        for split in splits:
            rows, self.annotation_versions = annotated_rows(self.layout, split)
            units += slice_units(split, rows, self.options.shard_clips)
        return units

    # -- run ------------------------------------------------------------------------------
    def run(self, unit: WorkUnit, workdir: Path) -> dict[str, int]:
        for encoder in self.encoders.values():
            encoder.load()
        provenance = self._provenance()
        frame_hook = (
            FrameJpegs(self.options.frame_size, self.options.jpeg_quality)
            if self.options.with_frames
            else None
        )
        rejected, frames = [], 0
        clips = extract_clips(
            unit.items,
            self._open_clip,
            self.encoders,
            batch_size=self.options.batch_size,
            decode_workers=self.options.decode_workers,
            frame_hook=frame_hook,
        )
        with ShardWriter(workdir, "part", self.max_shard_bytes) as writer:
            for clip in clips:
                row = unit.items[clip.position]
                problem = (
                    clip.error and (DECODE_FAILED, clip.error) or self._shape_problem(row, clip)
                )
                if problem:
                    self._frame_times.pop(
                        row["id"], None
                    )  # set when the clip opened, not needed now
                    rejected.append(
                        m.quarantine_row(
                            row["id"],
                            unit.split,
                            self.run_config.dataset,
                            self.name,
                            problem[0],
                            problem[1],
                            row["source_path"],
                        )
                    )
                    continue
                writer.write(sample_key(row["id"]), self._fields(row, clip, provenance))
                frames += len(self.selection.indices(row["num_frames"]))
        atomic_write_json(workdir / UNIT_SHARDS, [s.as_dict() for s in writer.shards])
        write_parquet(m.to_table(rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        return {
            "ok": sum(s.samples for s in writer.shards),
            "quarantined": len(rejected),
            "frames": frames,
            "bytes": sum(s.bytes for s in writer.shards),
        }

    def _open_clip(self, row: dict):
        source = open_source(
            self.base_dir / row["source_path"], row["fps"], row["start"], row["end"], threads=2
        )
        if source.num_frames != row["num_frames"]:
            raise DecodeError(
                f"{source.num_frames} frames now, the manifest counted {row['num_frames']}: rerun it"
            )
        self._frame_times[row["id"]] = source.timestamps(self.selection.indices(source.num_frames))
        return source, self.selection

    def _shape_problem(self, row: dict, clip: ExtractedClip) -> tuple[str, str] | None:
        expected = len(self.selection.indices(row["num_frames"]))
        for name, array in clip.arrays.items():
            if array.shape[0] != expected:
                return (
                    FEATURE_COUNT_MISMATCH,
                    f"{name}: {array.shape[0]} frames decoded, manifest selects {expected}",
                )
        return None

    def _fields(self, row: dict, clip: ExtractedClip, provenance: dict) -> dict[str, bytes]:
        fields: dict[str, bytes] = {}
        described: dict[str, dict] = {}
        for field, array in clip.arrays.items():
            dtype = np.float32 if field in FULL_PRECISION_FIELDS else np.float16
            fields[field] = encode_npy(array.astype(dtype))
            described[field] = {"dtype": np.dtype(dtype).name, "shape": list(array.shape)}
        for field, array in annotation_arrays(row).items():  # per clip, not per frame
            fields[field] = encode_npy(array)
            described[field] = {"dtype": "float32", "shape": list(array.shape), "per_clip": True}
        for position, jpeg in enumerate(clip.extras):
            fields[frame_field(position)] = jpeg
        if clip.extras:
            described["frame_*.jpg"] = {
                "count": len(clip.extras),
                "size": [self.options.frame_size] * 2,
            }
        indices = self.selection.indices(row["num_frames"])
        times = self._frame_times.pop(row["id"])
        fields["json"] = encode_json(sample_json(row, indices, times, described, provenance))
        return fields

    def _provenance(self) -> dict[str, Any]:
        return {
            "prep_version": __version__,
            "stages": {**self.annotation_versions, self.name: self.version},
            "frame_selection": self.selection.as_dict(),
            "features": {name: enc.provenance() for name, enc in self.encoders.items()},
            "options": {
                k: v for k, v in self.options_dict().items() if k not in self.runtime_options
            },
        }

    # -- finalize -------------------------------------------------------------------------
    def finalize(self, units: list[WorkUnit]) -> dict[str, Any]:
        parts: dict[str, list] = defaultdict(list)
        quarantine: list[dict] = []
        world = self.run_config.world_size
        for position, (unit, folder) in enumerate(committed_units(self, units)):
            for info in json.loads((folder / UNIT_SHARDS).read_text()):
                parts[unit.split].append((position % world, folder / info["name"], info))
            quarantine += m.read_table(folder / UNIT_QUARANTINE).to_pylist()
        provenance = self._provenance()
        splits = {}
        for split in sorted({u.split for u in units}, key=m.split_order):
            expected = {sample_key(i["id"]) for u in units if u.split == split for i in u.items}
            rejected = [q for q in quarantine if q["split"] == split]
            extra = {
                "samples": sum(p[2]["samples"] for p in parts[split]),
                "provenance": provenance,
            }
            index = publish_split(
                self.layout.shard_dir(split),
                split,
                parts[split],
                expected,
                {sample_key(q["id"]) for q in rejected},
                extra,
            )
            splits[split] = {
                "samples": index["samples"],
                "shards": len(index["shardlist"]),
                "bytes": sum(s["filesize"] for s in index["shardlist"]),
                "quarantined": dict(sorted(Counter(q["reason"] for q in rejected).items())),
            }
        write_parquet(
            m.to_table(quarantine, m.QUARANTINE_SCHEMA, provenance),
            self.layout.quarantine_table(self.name),
        )
        return {
            "splits": splits,
            "outputs": str(self.layout.out / "shards"),
            "features": provenance["features"],
        }
