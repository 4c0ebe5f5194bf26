"""Stage ``manifest``: read a corpus as distributed, probe every sample, write parquet manifests.

Outputs (see :mod:`pipeline.layout`): ``manifest/<split>.parquet`` with
:data:`pipeline.manifest.MANIFEST_SCHEMA`, ``manifest/quarantine.parquet`` and ``summary.json``.
The frame selection chosen here is recorded in the manifest and used by every later stage.
"""

from __future__ import annotations

import importlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import manifests
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.stage import Export, Planned, WorkUnit, hook, option, slice_units
from pipeline.table_stage import MergedTables, MergeResult, TableStage, UnitTables
from pipeline.video import SAMPLING_MODES, FrameSelection
from stages.manifest.candidates import check_candidates
from stages.manifest.probe import ProbeContext, probe
from stages.manifest.text import TEXT_NORMALISATION

# what every later stage may read of a manifest row (the features stage copies them into shards)
MANIFEST_FIELDS = (
    "id",
    "dataset",
    "split",
    "language",
    "translation",
    "gloss",
    "signer",
    "fps",
    "num_frames",
    "source_path",
    "start",
    "end",
    "source_id",
    "crop",
)


@dataclass(frozen=True)
class ManifestOptions:
    unit_size: int = option(200, "Samples per work unit.", min=1)
    deep_check: bool = option(
        False,
        "Decode every frame while probing, not only first and last (default: spot).",
        flag="--deep-check/--spot-check",
    )
    min_frames: int = option(2, "Quarantine samples with fewer frames.", min=1)
    frame_count_tolerance: int = option(
        0, "Allowed difference to an annotated frame count (default: 0).", min=0
    )
    fps: float | None = option(
        None,
        "Frame rate for samples that give none (overrides container and descriptor).",
        min=m.FPS_RANGE[0],
        max=m.FPS_RANGE[1],
    )
    frame_step: int = option(1, "Use every k-th frame.", min=1)
    max_frames: int | None = option(None, "Use at most this many frames per sample.", min=1)
    sampling: str = option(
        "uniform", "How --max-frames picks: uniform or head.", choices=SAMPLING_MODES
    )
    signer_crop: bool = option(
        False,
        "Cut every frame to the corpus's signer box (OpenASL bbox-v1.0.json) as its official "
        "clips are cut: squared, black-padded, 224x224.",
        flag="--signer-crop/--no-signer-crop",
    )

    def __post_init__(self) -> None:
        self.selection()  # its own rules between step, count and sampling: ValueError, one line

    def selection(self) -> FrameSelection:
        return FrameSelection(self.frame_step, self.max_frames, self.sampling)


@dataclass(frozen=True)
class ManifestContext:
    base_dir: Path  # the folder ``source_path`` values start from


def reader_of(descriptor: manifests.Descriptor) -> Callable[..., tuple[Path, list[dict]]]:
    """The function a descriptor names (``reader = "module:function"``): a new corpus is a
    descriptor plus a reader module, with no edit here."""
    module, _, function = descriptor.reader.partition(":")
    if not module or not function:
        raise PrepError(
            f'manifests/{descriptor.name}.toml names no reader (reader = "module:function")'
        )
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise PrepError(
            f"dataset {descriptor.name}: reader {descriptor.reader} not found: {exc}"
        ) from exc


class ManifestStage(TableStage):
    """Reads a corpus as distributed and probes every sample: the table every stage reads."""

    name = "manifest"
    # 6: video_stream (ffmpeg's stream choice), displayed sizes, [start, end) segments, WLASL
    # frame numbers; 5: frame folders (system files ignored, unnumbered images never frames, two
    # sequences quarantined); 4: text in one normal form (NFC, no invisibles); 3: source_id (a
    # corpus's own id where the safe id differs); 2: frame timing
    version = 6
    options_class = ManifestOptions
    schema = m.MANIFEST_SCHEMA
    exports = Export(MANIFEST_FIELDS)
    writes_manifest = True
    position = 10
    cost_unit = "clip"
    piloted = False  # its own unit timings are the measurement
    libraries = ("av", "opencv-python-headless")

    def __init__(self, options: ManifestOptions, run: Any) -> None:
        super().__init__(options, run)
        if run.dataset not in manifests.available():
            known = ", ".join(manifests.available())
            raise PrepError(f"unknown dataset {run.dataset!r}; choose one of {known}")
        self.descriptor = manifests.load_descriptor(run.dataset)
        self.reader = reader_of(self.descriptor)

    def _read(self) -> tuple[Path, list[dict]]:
        root = self.run_config.root
        if not root.exists():
            raise PrepError(f"--root does not exist: {root}")
        base, candidates = self.reader(root, self.descriptor)
        return base, check_candidates(candidates, base, self.descriptor.language)

    def plan(self) -> Planned:
        base_dir, candidates = self._read()
        by_split: dict[str, list[dict]] = defaultdict(list)
        for cand in candidates:
            by_split[cand["split"]].append(cand)
        units = []
        for split in sorted(by_split, key=m.split_order):
            units += slice_units(split, by_split[split], self.options.unit_size)
        return Planned(units, ManifestContext(base_dir))

    def process(self, unit: WorkUnit, context: ManifestContext) -> UnitTables:
        ctx = ProbeContext(
            base=context.base_dir,
            dataset=self.run_config.dataset,
            language=self.descriptor.language,
            fps=self.descriptor.fps,
            fps_override=self.options.fps,
            deep_check=self.options.deep_check,
            min_frames=self.options.min_frames,
            frame_count_tolerance=self.options.frame_count_tolerance,
            known_defects=self.descriptor.known_defects,
            signer_crop=self.options.signer_crop,
        )
        rows, rejected = [], []
        for cand in unit.items:
            row, quarantined = probe(cand, ctx)
            rows.extend([row] if row else [])
            rejected.extend([quarantined] if quarantined else [])
        return UnitTables(rows, rejected, {"frames": sum(r["num_frames"] for r in rows)})

    def merge(self, merged: MergedTables, context: ManifestContext) -> MergeResult:
        meta = self.provenance()
        base_from_root = os.path.relpath(context.base_dir, self.run_config.root)
        meta.update(
            {
                "frame_selection": self.options.selection().as_dict(),
                "base_from_root": Path(base_from_root).as_posix(),  # m.source_base reverses it
                "text_normalisation": TEXT_NORMALISATION,
            }
        )
        figures = {
            split: {
                "frames": sum(r["num_frames"] for r in merged.rows[split]),
                "expected": self.descriptor.expected_split_sizes.get(split),
            }
            for split in merged.splits
        }
        return MergeResult(meta, figures, {"frame_selection": meta["frame_selection"]})

    doctor_checks = hook("stages.manifest.checks:doctor_checks")
    report_sections = hook("stages.manifest.report:report_sections")
