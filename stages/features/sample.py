"""What one shard sample holds besides the features: its ``json`` and, optionally, its frames.

Per-sample annotations from other stages come in through :data:`ANNOTATIONS`: a stage that
publishes ``<out>/<stage>/<split>.parquet`` keyed by ``id`` lists its columns here and they
appear in every sample's json, with no other change to this stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline import manifest as m
from pipeline.layout import Layout

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
)


@dataclass(frozen=True)
class Annotation:
    """Columns of another stage's per-split table copied into each sample: into its json, or,
    for ``arrays`` (column -> shard field), into an ``.npy`` field of their own."""

    stage: str
    columns: tuple[str, ...]
    arrays: tuple[tuple[str, str], ...] = ()


ANNOTATIONS = (
    Annotation("pseudo-gloss", ("pseudo_glosses", "pseudo_gloss_ids")),
    Annotation(
        "hand-captions",
        ("hand_caption", "caption_emb"),
        arrays=(("caption_emb", "caption_emb.npy"),),
    ),
)
ARRAY_COLUMNS = {column: field for a in ANNOTATIONS for column, field in a.arrays}


def annotated_rows(layout: Layout, split: str) -> tuple[list[dict], dict[str, int]]:
    """The manifest rows of a split, each extended with the annotations that exist on disk.

    Returns the rows and ``{stage: stage_version}`` of the manifest and the annotation stages found.
    """
    manifest = layout.split_table("manifest", split)
    rows = [{k: row[k] for k in MANIFEST_FIELDS} for row in m.read_table(manifest).to_pylist()]
    found = {"manifest": m.read_provenance(manifest).get("stage_version")}
    for annotation in ANNOTATIONS:
        path = layout.split_table(annotation.stage, split)
        if not layout.summary(annotation.stage).is_file() or not path.is_file():
            continue
        table = m.read_table(path).select(["id", *annotation.columns]).to_pylist()
        by_id = {row.pop("id"): row for row in table}
        for row in rows:
            row.update(by_id.get(row["id"], {c: None for c in annotation.columns}))
        found[annotation.stage] = m.read_provenance(path).get("stage_version")
    return rows, found


def sample_json(
    row: dict, indices: np.ndarray, times: np.ndarray, fields: dict[str, dict], provenance: dict
) -> dict[str, Any]:
    """Everything a trainer needs to know about one sample, beside its arrays: ``frame_times``
    are each stored frame's seconds from the sample's start, read from the video's timestamps."""
    plain = {k: v for k, v in row.items() if k not in ARRAY_COLUMNS}
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
        for column, field in ARRAY_COLUMNS.items()
        if row.get(column) is not None
    }


@dataclass(frozen=True)
class FrameJpegs:
    """Decode-thread hook for ``--with-frames``: each frame resized to ``size``² and JPEG-encoded."""

    size: int = 256
    quality: int = 90

    def __call__(self, frames: np.ndarray, info: Any = None) -> list[bytes]:
        encoded = []
        for frame in frames:
            small = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
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
