"""Stage ``features``: per-frame DINOv2 features packed with each clip's metadata into
WebDataset tar shards that training jobs stream.

Outputs: ``<out>/shards/<split>/<split>-<rank>-<NNNNNN>.tar`` with ``index.json`` (wids
format plus sha256, bytes and per-field stats per shard), ``<out>/features/quarantine.parquet``
and ``summary.json``. One sample per clip: ``json``, ``dinov2.npy`` (float16 ``[T, D]``) and,
with ``--with-frames``, ``frame_NNNNN.jpg`` (the clip at ``frame_size``², one JPEG per frame).
"""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline import manifest as m
from pipeline.columns import annotated_rows, column_arrays, split_arrays
from pipeline.devices import resolve_device, torch_dtype
from pipeline.errors import PrepError
from pipeline.layout import UNIT_QUARANTINE
from pipeline.shards import ShardWriter, encode_json, encode_npy, parse_size, sample_key
from pipeline.stage import Planned, Stage, WorkUnit, hook, slice_units
from pipeline.storage import atomic_write_json, write_parquet
from pipeline.table_stage import quarantine_row
from pipeline.video import FrameSelection, open_sample
from stages.features.commands import convert_hamer
from stages.features.dinov2 import Dinov2Encoder
from stages.features.extract import ExtractedClip, extract_clips
from stages.features.options import FeaturesOptions
from stages.features.publish import publish_split
from stages.features.sample import FrameJpegs, frame_field, sample_json

DECODE_FAILED = "decode_failed"
FEATURE_COUNT_MISMATCH = "feature_count_mismatch"
UNIT_SHARDS = "shards.json"
FULL_PRECISION_FIELDS = {"hands.npy", "pose.npy", "pose_conf.npy"}  # pixels: float16 rounds them


def own_dtype(field: str) -> str:
    """The stored dtype of one of this stage's per-frame fields."""
    return "float32" if field in FULL_PRECISION_FIELDS else "float16"


def _field_stats(parts: list) -> dict[str, dict]:
    """Field -> the first shard's stats that describe it (``shape_tail``), over a split."""
    found: dict[str, dict] = {}
    for _, _, info in parts:
        for field, stats in info["fields"].items():
            found.setdefault(field, stats)
    return found


@dataclass(frozen=True)
class FeaturesContext:
    base_dir: Path  # the folder the manifest's ``source_path`` values start from
    selection: FrameSelection  # the manifest's frame selection
    annotation_versions: dict[str, int]  # stage -> version of what the samples carry


class FeaturesStage(Stage):
    """Per-frame features of every clip, packed with its annotations into WebDataset shards."""

    name = "features"
    version = 4  # 4: exported arrays in their declared dtype, per clip or per frame, ``missing`` in a sample's json, the index describes its arrays; 3: recipe options (frame geometry, HaMeR conventions); 2: frame_times in every sample's json
    options_class = FeaturesOptions
    requires = ("manifest",)
    collects_exports = True  # after every stage whose columns ride along in the shards
    position = 40
    uses_gpu = True
    libraries = ("webdataset", "wids", "mediapipe", "pose-format")
    commands = (("convert-hamer", convert_hamer),)

    def __init__(self, options: FeaturesOptions, run: Any) -> None:
        super().__init__(options, run)
        self._frame_times: dict[
            str, np.ndarray
        ] = {}  # clip id -> stored frames' seconds, set at decode
        self.max_shard_bytes = parse_size(options.shard_size)
        self.device = resolve_device(options.device)
        torch_dtype(options.precision, self.device)  # validates the choice early
        self.encoders = {name: self._encoder(name) for name in options.feature_list()}

    def _encoder(self, name: str):
        o = self.options
        if name == "dinov2":
            return Dinov2Encoder(
                o.dinov2,
                pooling=o.dinov2_pooling,
                device=self.device,
                precision=o.precision,
                geometry=o.frame_geometry,
            )
        if name == "pose":
            from stages.pose.encoder import pose_encoder

            return pose_encoder(o, self.layout)
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
            left_hands=o.hamer_left_hands,
            missing_hand=o.hamer_missing_hand,
            blur=o.hamer_blur,
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
    def plan(self) -> Planned:
        splits = m.manifest_splits(self.layout)
        first = m.read_provenance(m.manifest_table(self.layout, splits[0]))
        units, versions = [], {}
        for split in splits:
            rows, versions = annotated_rows(self.layout, split)
            units += slice_units(split, rows, self.options.shard_clips)
        context = FeaturesContext(
            base_dir=m.source_base(first, self.run_config.root),
            selection=FrameSelection(**first.get("frame_selection", {})),
            annotation_versions=versions,
        )
        return Planned(units, context)

    # -- run ------------------------------------------------------------------------------
    def run(self, unit: WorkUnit, workdir: Path, context: FeaturesContext) -> dict[str, int]:
        for encoder in self.encoders.values():
            encoder.load()
        provenance = self._provenance(context)
        frame_hook = (
            FrameJpegs(
                self.options.frame_size, self.options.jpeg_quality, self.options.frame_geometry
            )
            if self.options.with_frames
            else None
        )
        rejected, frames = [], 0
        clips = extract_clips(
            unit.items,
            functools.partial(self._open_clip, context),
            self.encoders,
            batch_size=self.options.batch_size,
            decode_workers=self.options.decode_workers,
            frame_hook=frame_hook,
        )
        with ShardWriter(workdir, "part", self.max_shard_bytes) as writer:
            for clip in clips:
                row = unit.items[clip.position]
                problem = clip.error and (DECODE_FAILED, clip.error)
                problem = problem or self._shape_problem(row, clip, context.selection)
                if problem:
                    self._frame_times.pop(row["id"], None)  # set when the clip opened
                    rejected.append(quarantine_row(self, unit, row, *problem))
                    continue
                fields = self._fields(row, clip, provenance, context.selection)
                writer.write(sample_key(row["id"]), fields)
                frames += len(context.selection.indices(row["num_frames"]))
        atomic_write_json(workdir / UNIT_SHARDS, [s.as_dict() for s in writer.shards])
        write_parquet(m.to_table(rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        return {
            "ok": sum(s.samples for s in writer.shards),
            "quarantined": len(rejected),
            "frames": frames,
            "bytes": sum(s.bytes for s in writer.shards),
        }

    def _open_clip(self, context: FeaturesContext, row: dict):
        source = open_sample(context.base_dir, row, threads=2)
        selected = context.selection.indices(source.num_frames)
        self._frame_times[row["id"]] = source.timestamps(selected)
        return source, context.selection

    def _shape_problem(
        self, row: dict, clip: ExtractedClip, selection: FrameSelection
    ) -> tuple[str, str] | None:
        expected = len(selection.indices(row["num_frames"]))
        for name, array in clip.arrays.items():
            if array.shape[0] != expected:
                return (
                    FEATURE_COUNT_MISMATCH,
                    f"{name}: {array.shape[0]} frames decoded, manifest selects {expected}",
                )
        return None

    def _fields(
        self, row: dict, clip: ExtractedClip, provenance: dict, selection: FrameSelection
    ) -> dict[str, bytes]:
        fields: dict[str, bytes] = {}
        described: dict[str, dict] = {}
        indices = selection.indices(row["num_frames"])
        for field, array in clip.arrays.items():
            dtype = own_dtype(field)
            fields[field] = encode_npy(array.astype(dtype))
            described[field] = {"dtype": dtype, "shape": list(array.shape)}
        for field, (array, description) in column_arrays(row, len(indices)).items():
            if field in fields:
                raise PrepError(f"an exported column is named like the features field {field}")
            fields[field] = encode_npy(array)  # other stages' columns, by the framework's rule
            described[field] = description
        for position, jpeg in enumerate(clip.extras):
            fields[frame_field(position)] = jpeg
        if clip.extras:
            described["frame_*.jpg"] = {
                "count": len(clip.extras),
                "size": [self.options.frame_size] * 2,
                "frame_geometry": self.options.frame_geometry,
            }
        times = self._frame_times.pop(row["id"])
        fields["json"] = encode_json(sample_json(row, indices, times, described, provenance))
        return fields

    def _provenance(self, context: FeaturesContext) -> dict[str, Any]:
        provenance = {
            "prep_version": __version__,
            "stages": {**context.annotation_versions, self.name: self.version},
            "frame_selection": context.selection.as_dict(),
            "features": {name: enc.provenance() for name, enc in self.encoders.items()},
            "options": {
                k: v for k, v in self.options_dict().items() if k not in self.runtime_options()
            },
        }
        if (recipe := self.recipe_record()) is not None:
            provenance["recipe"] = recipe
        return provenance

    # -- finalize -------------------------------------------------------------------------
    def finalize(self, units: list[WorkUnit], context: FeaturesContext) -> dict[str, Any]:
        parts: dict[str, list] = defaultdict(list)
        quarantine: list[dict] = []
        world = self.run_config.world_size
        for position, unit in enumerate(units):
            folder = self.layout.unit_dir(self.name, unit.id)
            for info in json.loads((folder / UNIT_SHARDS).read_text()):
                parts[unit.split].append((position % world, folder / info["name"], info))
            quarantine += m.read_table(folder / UNIT_QUARANTINE).to_pylist()
        provenance = self._provenance(context)
        splits = {}
        for split in sorted({u.split for u in units}, key=m.split_order):
            expected = {sample_key(i["id"]) for u in units if u.split == split for i in u.items}
            rejected = [q for q in quarantine if q["split"] == split]
            extra = {
                "samples": sum(p[2]["samples"] for p in parts[split]),
                "arrays": split_arrays(_field_stats(parts[split]), own_dtype),
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
            "outputs": str(self.layout.shards_root()),
            "features": provenance["features"],
        }

    # -- hooks of the commands around a run --------------------------------------------------
    @classmethod
    def demo_options(cls, models: Path) -> dict[str, Any]:
        """A tiny randomly initialised DINOv2: the demo shows the plumbing offline."""
        from stages.features.demo import write_tiny_dinov2

        return {"dinov2": str(write_tiny_dinov2(models / "dinov2-tiny-random"))}

    doctor_checks = hook("stages.features.checks:doctor_checks")
    report_sections = hook("stages.features.report:report_sections")
    report_provenance = hook("stages.features.report:report_provenance")
    verify = hook("stages.features.verify:verify_shards")
