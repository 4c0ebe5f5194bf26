"""What one shard sample holds besides the features: its ``json`` and, optionally, its frames.

Per-sample annotations come from every registered stage that declares an ``Export``: its
columns of ``<out>/<stage>/<split>.parquet`` (keyed by ``id``) appear in every sample's json,
and its ``arrays`` as ``.npy`` fields, with no change to this stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline import manifest as m
from pipeline import registry
from pipeline.layout import Layout
from stages.features.geometry import KEEP_ASPECT, stored_frame


def annotated_rows(layout: Layout, split: str) -> tuple[list[dict], dict[str, int]]:
    """The manifest rows of a split, each extended with every exporting stage's columns that
    exist on disk (:class:`pipeline.stage.Export`, read through the registry).

    Returns the rows and ``{stage: stage_version}`` of the manifest and the stages found.
    """
    source = registry.manifest_stage()
    manifest = layout.split_table(source.name, split)
    fields = source.exports.columns
    rows = [{k: row[k] for k in fields} for row in m.read_table(manifest).to_pylist()]
    found = {source.name: m.read_provenance(manifest).get("stage_version")}
    for stage in annotating_stages():
        path = layout.split_table(stage.name, split)
        if not layout.summary(stage.name).is_file() or not path.is_file():
            continue
        columns = stage.exports.columns
        table = m.read_table(path).select(["id", *columns]).to_pylist()
        by_id = {row.pop("id"): row for row in table}
        for row in rows:
            row.update(by_id.get(row["id"], {c: None for c in columns}))
        found[stage.name] = m.read_provenance(path).get("stage_version")
    return rows, found


def annotating_stages() -> list:
    """Stages besides the manifest whose exported columns ride along in every sample."""
    return [s for s in registry.exporters() if not s.writes_manifest]


def array_columns() -> dict[str, str]:
    """Exported columns stored as their own ``.npy`` field (column -> field name)."""
    return {column: field for s in annotating_stages() for column, field in s.exports.arrays}


def sample_json(
    row: dict, indices: np.ndarray, times: np.ndarray, fields: dict[str, dict], provenance: dict
) -> dict[str, Any]:
    """Everything a trainer needs to know about one sample, beside its arrays: ``frame_times``
    are each stored frame's seconds from the sample's start, read from the video's timestamps."""
    arrays = array_columns()
    plain = {k: v for k, v in row.items() if k not in arrays}
    return {
        **plain,
        "frame_indices": [int(i) for i in indices],
        "frame_times": [round(float(t), 6) for t in times],
        "fields": fields,
        "provenance": provenance,
    }


def annotation_arrays(row: dict) -> dict[str, np.ndarray]:
    """Per-clip arrays other stages left for this sample (e.g. ``caption_emb.npy``)."""
    return {
        field: np.asarray(row[column], np.float32)
        for column, field in array_columns().items()
        if row.get(column) is not None
    }


@dataclass(frozen=True)
class FrameJpegs:
    """Decode-thread hook for ``--with-frames``: each frame brought to ``size``² as ``geometry``
    stores it (:func:`stages.features.geometry.stored_frame`: the same geometry as
    ``dinov2.npy``) and JPEG-encoded."""

    size: int = 256
    quality: int = 90
    geometry: str = KEEP_ASPECT

    def __call__(self, frames: np.ndarray, info: Any = None) -> list[bytes]:
        encoded = []
        for frame in frames:
            small = stored_frame(frame, self.geometry, self.size)
            ok, data = cv2.imencode(
                ".jpg",
                cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, self.quality],
            )
            if not ok:
                raise ValueError("JPEG encoding failed")
            encoded.append(data.tobytes())
        return encoded


def frame_field(position: int) -> str:
    """Field name of the ``position``-th stored frame; sorts in frame order."""
    return f"frame_{position:05d}.jpg"
