"""``prep verify`` for the features stage: published shards against their index, the manifest
and themselves.

Per split: every shard's sha256, size and sample count match ``index.json``; every manifest
sample is in exactly one shard or in the features quarantine; every sample's json parses,
names the stage versions that made it, and lists the frames whose count every per-frame array
has (and which the manifest's frame selection gives). Nothing is trusted that is not re-read.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import manifest as m
from pipeline.columns import annotated_rows, array_columns
from pipeline.layout import Layout
from pipeline.shard_reader import ShardError, checked_npy, sample_meta, shard_file
from pipeline.shards import INDEX_NAME, iter_tar_samples, read_index, sample_key
from pipeline.verify import SplitReport
from pipeline.video import FrameSelection

STAGE = "features"
STALE_HINT = "the shards are older than it; rerun --stage features with --overwrite"
MANIFEST = "manifest"


def verify_shards(layout: Layout) -> list[SplitReport]:
    """One report per manifest split."""
    quarantined = _quarantined_keys(layout)
    return [
        verify_split(layout, split, quarantined.get(split, set()))
        for split in m.manifest_splits(layout)
    ]


def _quarantined_keys(layout: Layout) -> dict[str, set[str]]:
    path = layout.quarantine_table(STAGE)
    found: dict[str, set[str]] = {}
    if path.is_file():
        for row in m.read_table(path).to_pylist():
            found.setdefault(row["split"], set()).add(sample_key(row["id"]))
    return found


def verify_split(layout: Layout, split: str, quarantined: set[str]) -> SplitReport:
    report = SplitReport(split, stage=STAGE, quarantined=len(quarantined))
    folder = layout.shard_dir(split)
    if not (folder / INDEX_NAME).is_file():
        if m.read_table(
            layout.split_table(MANIFEST, split)
        ).num_rows:  # an empty split has no shards
            report.problem(f"no {INDEX_NAME} in {folder}")
        return report
    try:
        index = read_index(folder)
    except ShardError as exc:
        report.problem(str(exc))
        return report
    manifest = {
        sample_key(r["id"]): r
        for r in m.read_table(layout.split_table(MANIFEST, split)).to_pylist()
    }
    selection = FrameSelection(
        **m.read_provenance(layout.split_table(MANIFEST, split)).get("frame_selection", {})
    )
    tables = {sample_key(r["id"]): r for r in annotated_rows(layout, split)[0]}
    seen: Counter[str] = Counter()
    for shard in index["shardlist"]:
        report.shards += 1
        try:
            path = shard_file(folder, shard)
        except ShardError as exc:
            report.problem(str(exc))
            continue
        _check_shard(path, shard, manifest, tables, selection, seen, report)
    listed = sum(s["nsamples"] for s in index["shardlist"])
    if index.get("samples", listed) != listed:
        report.problem(f"index says {index.get('samples')} samples, its shards list {listed}")
    for key, count in seen.items():
        if count > 1:
            report.problem(f"sample {key} appears {count} times")
    for key in sorted(set(manifest) - set(seen) - quarantined):
        report.problem(f"manifest sample {key} is in no shard and not in the quarantine")
    for key in sorted(set(seen) & quarantined):
        report.problem(f"sample {key} is both in a shard and in the quarantine")
    return report


def _check_shard(
    path: Path,
    entry: dict,
    manifest: dict,
    tables: dict,
    selection: FrameSelection,
    seen: Counter,
    report: SplitReport,
) -> None:
    name = path.name
    if not path.is_file():
        report.problem(f"{name}: listed in the index but missing")
        return
    size = path.stat().st_size
    report.bytes += size
    if size != entry["filesize"]:
        report.problem(f"{name}: {size} bytes, index says {entry['filesize']}")
    count, digest, listed = 0, hashlib.sha256(), entry.get("keys")
    try:
        for key, fields in iter_tar_samples(path, digest):
            if listed is not None and (count >= len(listed) or listed[count] != key):
                report.problem(f"{name}: sample {count} is {key!r}, its index lists another")
            count += 1
            seen[key] += 1
            _check_sample(name, key, fields, manifest.get(key), selection, report)
            if key in tables and key in manifest:
                _check_columns(name, key, fields, tables[key], report)
    except ShardError as exc:  # a link, a path or a cut member: a finding, not a crash
        report.problem(str(exc))
        digest = None
    except (tarfile.TarError, OSError, EOFError) as exc:
        report.problem(f"{name}: unreadable after {count} samples: {exc}".splitlines()[0])
        digest = None
    if digest is None or digest.hexdigest() != entry["sha256"]:
        report.problem(f"{name}: sha256 differs from the index (the file changed or is damaged)")
    report.samples += count
    if count != entry["nsamples"]:
        report.problem(f"{name}: {count} samples, index says {entry['nsamples']}")


def _check_sample(
    shard: str,
    key: str,
    fields: dict,
    row: dict | None,
    selection: FrameSelection,
    report: SplitReport,
) -> None:
    where = f"{shard}: {key}"
    if row is None:
        report.problem(f"{where}: not in the manifest")
        return
    try:  # json id = tar key, declared members present
        meta = sample_meta(shard, key, fields)
    except ShardError as exc:
        report.problem(str(exc))
        return
    stages = meta.get("provenance", {}).get("stages", {})
    if STAGE not in stages or MANIFEST not in stages:
        report.problem(f"{where}: json names no stage versions")
    frames = meta.get("frame_indices", [])
    if frames != [int(i) for i in selection.indices(row["num_frames"])]:
        report.problem(
            f"{where}: frame_indices disagree with num_frames {row['num_frames']} and the frame selection"
        )
    times = meta.get("frame_times", [])
    if not isinstance(times, list) or not all(isinstance(t, (int, float)) for t in times):
        report.problem(f"{where}: frame_times are not a list of numbers")
        times = []
    if (
        len(times) != len(frames)
        or any(b < a for a, b in zip(times, times[1:]))
        or (times and times[0] < 0)
    ):
        report.problem(
            f"{where}: frame_times are not one non-negative, rising time per stored frame"
        )
    per_clip = {
        name
        for name, info in meta.get("fields", {}).items()
        if isinstance(info, dict) and info.get("per_clip")
    }
    for name, data in fields.items():
        if not name.endswith(".npy") or name in per_clip:
            continue
        try:
            array = checked_npy(shard, key, name, data)
        except ShardError as exc:
            report.problem(str(exc))
            continue
        if len(array) != len(frames):
            report.problem(f"{where}: {name} has {len(array)} rows for {len(frames)} frames")


def _check_columns(shard: str, key: str, fields: dict, expected: dict, report: SplitReport) -> None:
    """Every exported column in the sample by value against the table it came from now (the
    manifest's, pseudo-gloss ids, captions, a plug-in's arrays): shards made before an
    upstream stage was rerun disagree here even where their lineage was not recorded."""
    try:
        meta = sample_meta(shard, key, fields)
    except ShardError:
        return  # already reported by _check_sample
    arrays = array_columns()
    for column, value in expected.items():
        if column in arrays:
            field, dtype = arrays[column].field, arrays[column].dtype
            if value is None:
                differs = field in fields
            else:
                try:
                    held = (
                        checked_npy(shard, key, field, fields[field]) if field in fields else None
                    )
                except ShardError as exc:
                    report.problem(str(exc))
                    continue
                differs = held is None or not (
                    held.dtype == dtype and np.array_equal(held, np.asarray(value, dtype))
                )
        else:
            differs = meta.get(column) != value
        if differs:
            report.problem(f"{shard}: {key}: {column} differs from its table: {STALE_HINT}")
