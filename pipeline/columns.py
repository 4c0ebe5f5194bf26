"""Exported columns in shard samples: the framework's one rule for what stages hand to training.

Every registered stage with an :class:`~pipeline.stage.Export` (the manifest's columns aside)
adds its columns to every shard sample of the stage that packs shards: json columns as they
are, array columns as ``<column>.npy`` in their declared dtype, per clip or per frame (first
axis = the clip's selected frames). A clip that an upstream stage quarantined, or has no row
for, keeps its place in the shards: its json columns are ``null``, its array fields absent,
and the sample's json ``missing`` maps each such column to ``"<stage>: <reason>"``. The loader
fills those rows with zeros and says so in ``batch["present"]``; verify holds ``missing`` to
the tables like any column. One rule, so that a sample with no caption still trains a model
that reads only features, and no reader meets a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline import manifest as m
from pipeline import registry
from pipeline.contract import MISSING, PER_CLIP, PER_FRAME
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.stage import ArrayColumn


def annotating_stages() -> list:
    """Stages besides the manifest whose exported columns ride along in every sample."""
    return [s for s in registry.exporting_stages() if not s.writes_manifest]


def array_columns() -> dict[str, ArrayColumn]:
    """Every exported column stored as its own ``.npy`` field, by column name."""
    return {a.column: a for s in annotating_stages() for a in s.exports.arrays}


def annotated_rows(layout: Layout, split: str) -> tuple[list[dict], dict[str, int]]:
    """The manifest rows of a split, each extended with the exported columns of every stage
    that has run (its summary and table exist), and ``missing`` where a stage has no row.

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
        reasons = quarantine_reasons(layout, stage.name, split)
        for row in rows:
            values = by_id.get(row["id"])
            if values is None:
                values = dict.fromkeys(columns)
                why = f"{stage.name}: {reasons.get(row['id'], 'no row in its table')}"
                row.setdefault(MISSING, {}).update(dict.fromkeys(columns, why))
            row.update(values)
        found[stage.name] = m.read_provenance(path).get("stage_version")
    return rows, found


def quarantine_reasons(layout: Layout, stage: str, split: str) -> dict[str, str]:
    """Sample id -> the reason ``stage`` quarantined it in ``split`` (its first, if several)."""
    path = layout.quarantine_table(stage)
    reasons: dict[str, str] = {}
    if path.is_file():
        for row in m.read_table(path).select(["id", "split", "reason"]).to_pylist():
            if row["split"] == split:
                reasons.setdefault(row["id"], row["reason"])
    return reasons


def json_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The row's values that go into the sample's json: all but the array columns."""
    arrays = array_columns()
    return {k: v for k, v in row.items() if k not in arrays}


def column_arrays(row: dict[str, Any], frames: int) -> dict[str, tuple[np.ndarray, dict]]:
    """Field -> (array in its declared dtype, its description for the json's ``fields``) for
    each array column the row holds. A per-frame column whose first axis is not the clip's
    ``frames`` selected frames, or a value that is no array, is the exporting stage's error:
    raised in one line, never stored."""
    out = {}
    for column, declared in array_columns().items():
        value = row.get(column)
        if value is None:
            continue
        array = _as_array(value, declared, row["id"])
        described = {"dtype": np.dtype(declared.dtype).name, "shape": list(array.shape)}
        if declared.per == PER_CLIP:
            described["per_clip"] = True
        elif array.ndim == 0 or len(array) != frames:
            rows = 0 if array.ndim == 0 else len(array)
            raise PrepError(
                f"{owner(column)} exported {column} for {row['id']} with {rows} rows, but its "
                f"{frames} selected frames need one each: rerun --stage {owner(column)} "
                "--overwrite (was it made before the manifest's frame selection changed?)"
            )
        out[declared.field] = (array, described)
    return out


def _as_array(value: Any, declared: ArrayColumn, sample: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=declared.dtype)
    except (ValueError, TypeError) as exc:
        raise PrepError(
            f"{owner(declared.column)} exported {declared.column} for {sample} as something "
            f"that is no {declared.dtype} array: {exc}".splitlines()[0]
        ) from None


def owner(column: str) -> str:
    """The name of the stage that exports ``column``."""
    return next(s.name for s in annotating_stages() if column in s.exports.columns)


def split_arrays(field_stats: dict[str, dict], own_dtype: Callable[[str], str]) -> dict[str, dict]:
    """The index's description of a split's ``.npy`` fields, what a loader needs before it
    reads a sample: per clip or per frame, dtype, and the shape after the first axis.
    ``field_stats``: field -> stats with ``shape_tail`` (:class:`pipeline.shards.FieldStats`);
    ``own_dtype``: the dtype of each of the packing stage's own per-frame fields."""
    declared = {a.field: a for a in array_columns().values()}
    described = {}
    for field, stats in sorted(field_stats.items()):
        if not field.endswith(".npy") or "shape_tail" not in stats:
            continue
        column = declared.get(field)
        described[field] = {
            "per": column.per if column else PER_FRAME,
            "dtype": column.dtype if column else own_dtype(field),
            "shape_tail": stats["shape_tail"],
        }
    return described
