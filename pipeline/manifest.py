"""Parquet schemas of the manifest and the quarantine, defined once, plus their readers.

Every table carries its provenance (stage, versions, options) in the schema metadata under
the key ``prep``, so a file found on disk says what made it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.errors import PrepError
from pipeline.storage import canonical_json

# Quarantine reasons: constants that tests and reports rely on.
MISSING_FRAMES = "missing_frames"
UNREADABLE_FILE = "unreadable_file"
CORRUPT_FRAME = "corrupt_frame"
FRAME_GAP = "frame_gap"
FRAME_COUNT_MISMATCH = "frame_count_mismatch"
TOO_FEW_FRAMES = "too_few_frames"
EMPTY_TEXT = "empty_text"
UNDECODABLE_TEXT = "undecodable_text"
DUPLICATE_ID = "duplicate_id"
UNSAFE_ID = "unsafe_id"
PATH_ESCAPES_ROOT = "path_escapes_root"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNKNOWN_SPLIT = "unknown_split"
UNSUPPORTED_CODEC = "unsupported_codec"
SEGMENT_OUT_OF_RANGE = "segment_out_of_range"
VIDEO_UNAVAILABLE = "video_unavailable"  # annotated, but its clip or video is not under --root
NO_CAPTIONS = "no_captions"  # a downloaded video without a caption file: nothing to translate
AMBIGUOUS_FILES = "ambiguous_files"  # two caption files (or two videos) for one video id
AMBIGUOUS_FRAMES = "ambiguous_frames"  # a frame folder holding two numbered sequences

FPS_RANGE = (1, 240)  # a frame rate outside it is a typo or a broken header

MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("dataset", pa.string()),
        ("language", pa.string()),
        ("source_path", pa.string()),
        ("source_kind", pa.string()),
        ("num_frames", pa.int64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("translation", pa.string()),
        ("gloss", pa.string()),
        ("signer", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("fingerprint", pa.string()),
        ("codec", pa.string()),  # the video codec (null for frame folders)
        ("frame_timing", pa.string()),  # constant, variable, or restarts (timestamps unwrapped)
        ("source_id", pa.string()),  # the corpus's own id, verbatim, where ``id`` had to differ
        ("crop", pa.list_(pa.float64())),  # signer box x0 y0 x1 y1 (fractions), applied on read
        ("video_stream", pa.int32()),  # the file's stream that was read (ffmpeg's choice)
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("dataset", pa.string()),
        ("stage", pa.string()),
        ("source_path", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

PROVENANCE_KEY = b"prep"
SPLIT_ORDER = ("train", "dev", "val", "test")


def source_base(provenance: Mapping[str, Any], root: Path) -> Path:
    """The folder a manifest's ``source_path`` values start from, for a run whose ``--root`` is
    ``root``. The manifest stores it relative to its own ``--root`` (``base_from_root``), so the
    same corpus in another folder gives the same manifest bytes."""
    relative = provenance.get("base_from_root")
    if relative is not None:
        return Path(os.path.normpath(Path(root) / relative))
    return Path(provenance.get("base_dir") or root)  # manifests written before version 2


def manifest_stage_name() -> str:
    """The name of the registered stage that writes the manifest (the registry says which)."""
    from pipeline import registry  # the registry loads stages, which import this module

    return registry.manifest_stage().name


def manifest_table(layout, split: str) -> Path:
    """``<out>/<manifest stage>/<split>.parquet``: the manifest of one split."""
    return layout.split_table(manifest_stage_name(), split)


def recorded_root(layout) -> Path | None:
    """The ``--root`` of the run that wrote ``layout``'s manifest (from its run record), for
    commands that take no ``--root`` (report, plan)."""
    name = manifest_stage_name()
    try:
        chash = json.loads(layout.summary(name).read_text())["config_hash"]
        return Path(json.loads(layout.run_record(name, chash).read_text())["root"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


def split_order(split: str) -> tuple[int, str]:
    """Sort key: the usual splits first, in training order, then any others by name."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def manifest_splits(layout) -> list[str]:
    """The splits of a finished manifest, in :func:`split_order`; a clear error without one."""
    name = manifest_stage_name()
    summary = layout.summary(name)
    if not summary.is_file():
        raise PrepError(f"no manifest under {layout.out}; run --stage {name} first")
    return sorted(json.loads(summary.read_text())["splits"], key=split_order)


def provenance(stage: str, stage_version: int, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage,
        "stage_version": stage_version,
        "prep_version": __version__,
        "options": dict(options),
    }


def to_table(
    rows: Iterable[Mapping[str, Any]], schema: pa.Schema, meta: Mapping | None = None
) -> pa.Table:
    """Rows (dicts) to a table of exactly ``schema``; provenance goes into the metadata."""
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    table = pa.table(columns, schema=schema)
    if meta is not None:
        table = table.replace_schema_metadata({PROVENANCE_KEY: canonical_json(meta).encode()})
    return table


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)


def read_provenance(path: Path) -> dict[str, Any]:
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def quarantine_row(
    sample_id: str,
    split: str,
    dataset: str,
    stage: str,
    reason: str,
    detail: str,
    source_path: str | None = None,
) -> dict[str, Any]:
    return {
        "id": sample_id,
        "split": split,
        "dataset": dataset,
        "stage": stage,
        "source_path": source_path,
        "reason": reason,
        "detail": " ".join(detail.split())[:300],
    }
