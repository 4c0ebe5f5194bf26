"""``prep verify``: check published shards against their index, the manifest and themselves.

Per split: every shard's sha256, size and sample count match ``index.json``; every manifest
sample is in exactly one shard or in the features quarantine; every sample's json parses,
names the stage versions that made it, and lists the frames whose count every per-frame array
has (and which the manifest's frame selection gives). Nothing is trusted that is not re-read.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.shards import INDEX_NAME, decode_npy, iter_tar_samples, sample_key
from pipeline.video import FrameSelection

MAX_LISTED = 20


@dataclass
class SplitReport:
    split: str
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    quarantined: int = 0  # samples the features stage quarantined, beside the shards
    problems: list[str] = field(default_factory=list)

    @property
    def quarantine_share(self) -> float:
        total = self.samples + self.quarantined
        return self.quarantined / total if total else 0.0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)
        elif len(self.problems) == MAX_LISTED:
            self.problems.append("… further problems not listed")


def verify(out: Path, max_quarantine_share: float = 0.2) -> list[SplitReport]:
    """Every split's report; a split whose features quarantine passes ``max_quarantine_share``
    of its samples is a problem too (a split of mostly unreadable clips is not one to train on)."""
    layout = Layout(out)
    if not (out / "shards").is_dir():
        raise PrepError(f"no shards under {out}; run --stage features first")
    splits = m.manifest_splits(layout)
    quarantined = _quarantined_keys(layout)
    reports = [verify_split(layout, split, quarantined.get(split, set())) for split in splits]
    for report in reports:
        if report.quarantine_share > max_quarantine_share:
            report.problem(
                f"{report.quarantined} of {report.samples + report.quarantined} samples quarantined "
                f"({report.quarantine_share:.0%}), over --max-quarantine-share {max_quarantine_share:g}; "
                f"see {layout.quarantine_table('features')}"
            )
    return reports


def _quarantined_keys(layout: Layout) -> dict[str, set[str]]:
    path = layout.quarantine_table("features")
    found: dict[str, set[str]] = {}
    if path.is_file():
        for row in m.read_table(path).to_pylist():
            found.setdefault(row["split"], set()).add(sample_key(row["id"]))
    return found


def verify_split(layout: Layout, split: str, quarantined: set[str]) -> SplitReport:
    report = SplitReport(split, quarantined=len(quarantined))
    folder = layout.shard_dir(split)
    if not (folder / INDEX_NAME).is_file():
        if m.read_table(
            layout.split_table("manifest", split)
        ).num_rows:  # an empty split has no shards
            report.problem(f"no {INDEX_NAME} in {folder}")
        return report
    index = json.loads((folder / INDEX_NAME).read_text())
    manifest = {
        sample_key(r["id"]): r
        for r in m.read_table(layout.split_table("manifest", split)).to_pylist()
    }
    selection = FrameSelection(
        **m.read_provenance(layout.split_table("manifest", split)).get("frame_selection", {})
    )
    seen: Counter[str] = Counter()
    for shard in index["shardlist"]:
        report.shards += 1
        _check_shard(folder / shard["url"], shard, manifest, selection, seen, report)
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
    count, digest = 0, hashlib.sha256()
    try:
        for key, fields in iter_tar_samples(path, digest):
            count += 1
            seen[key] += 1
            _check_sample(name, key, fields, manifest.get(key), selection, report)
    except Exception as exc:  # a damaged tar is a finding, not a crash
        report.problem(
            f"{name}: unreadable after {count} samples: {type(exc).__name__}: {exc}".splitlines()[0]
        )
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
    try:
        meta = json.loads(fields["json"])
    except (KeyError, ValueError) as exc:
        report.problem(f"{where}: json missing or unreadable ({type(exc).__name__})")
        return
    stages = meta.get("provenance", {}).get("stages", {})
    if "features" not in stages or "manifest" not in stages:
        report.problem(f"{where}: json names no stage versions")
    frames = meta.get("frame_indices", [])
    if frames != [int(i) for i in selection.indices(row["num_frames"])]:
        report.problem(
            f"{where}: frame_indices disagree with num_frames {row['num_frames']} and the frame selection"
        )
    times = meta.get("frame_times", [])
    if (
        len(times) != len(frames)
        or any(b < a for a, b in zip(times, times[1:]))
        or (times and times[0] < 0)
    ):
        report.problem(
            f"{where}: frame_times are not one non-negative, rising time per stored frame"
        )
    per_clip = {name for name, info in meta.get("fields", {}).items() if info.get("per_clip")}
    for name, data in fields.items():
        if not name.endswith(".npy") or name in per_clip:
            continue
        try:
            array = decode_npy(data)
        except ValueError as exc:
            report.problem(f"{where}: {name} unreadable: {exc}")
            continue
        if len(array) != len(frames):
            report.problem(f"{where}: {name} has {len(array)} rows for {len(frames)} frames")


def format_reports(reports: list[SplitReport]) -> str:
    lines = [f"{'split':<8} {'shards':>6} {'samples':>8} {'bytes':>12} {'quarantined':>14}  result"]
    for r in reports:
        held = f"{r.quarantined} ({r.quarantine_share:.0%})"
        result = "ok" if not r.problems else f"{len(r.problems)} problem(s)"
        lines.append(
            f"{r.split:<8} {r.shards:>6} {r.samples:>8} {r.bytes:>12} {held:>14}  {result}"
        )
    for r in reports:
        lines += [f"  {r.split}: {p}" for p in r.problems]
    return "\n".join(lines)
