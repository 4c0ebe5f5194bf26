"""The report's sections that hold for any stage: quarantine tables, a summary for a stage
that brings no report of its own, and the provenance of every registered stage.

Nothing here knows a stage by name or reads its columns: stage-specific pages live next to
their stage (``Stage.report_sections``), so adding a stage edits no file of this package.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline import registry
from pipeline.manifest import split_order
from pipeline.report.data import RunOutputs
from pipeline.report.html import Section, not_run, pretty_json, table

if TYPE_CHECKING:
    from pipeline.stage import Stage

QUARANTINE_EXAMPLES = 20
SCALARS = (int, float, str, bool)


def quarantine_block(outputs: RunOutputs, stage: str) -> str:
    """Counts by split and reason, then the first few rejected samples with their detail."""
    rows = outputs.quarantine(stage)
    if not rows:
        return "<p>Quarantined: none.</p>"
    counts = Counter((r["split"] or "–", r["reason"]) for r in rows)
    splits = sorted({s for s, _ in counts}, key=split_order)
    reasons = sorted({r for _, r in counts})
    summary = table(
        ["reason", *splits, "total"],
        [
            [
                reason,
                *(counts[(s, reason)] for s in splits),
                sum(counts[(s, reason)] for s in splits),
            ]
            for reason in reasons
        ],
    )
    examples = table(
        ["split", "id", "reason", "detail"],
        [[r["split"], r["id"], r["reason"], r["detail"]] for r in rows[:QUARANTINE_EXAMPLES]],
        text_columns=(0, 1, 2, 3),
    )
    more = (
        f" (first {QUARANTINE_EXAMPLES} of {len(rows)})" if len(rows) > QUARANTINE_EXAMPLES else ""
    )
    return f"<h3>Quarantined by reason</h3>{summary}<details><summary>Samples{more}</summary>{examples}</details>"


def slug(name: str) -> str:
    """A stage name as a section id (the page's anchors and the tests' selectors)."""
    return re.sub(r"[^\w-]+", "-", name)


def summary_section(outputs: RunOutputs, stage: type[Stage]) -> Section:
    """A stage without its own report still shows what every summary has: one row per split
    with its samples and quarantines, plus whatever other single figures the split records."""
    name = stage.name
    if not outputs.ran(name):
        return not_run(slug(name), name, f"no {name} outputs (prep run --stage {name})")
    splits = {
        split: info
        for split, info in outputs.summary(name).get("splits", {}).items()
        if isinstance(info, Mapping)
    }
    known = ("samples", "quarantined")
    extra = sorted(
        {
            key
            for info in splits.values()
            for key, value in info.items()
            if key not in known and isinstance(value, SCALARS)
        }
    )
    rows = []
    for split in sorted(splits, key=split_order):
        info = splits[split]
        quarantined = info.get("quarantined")
        quarantined = quarantined if isinstance(quarantined, Mapping) else {}
        rows.append(
            [
                split,
                info.get("samples"),
                sum(quarantined.values()),
                ", ".join(f"{k} {v}" for k, v in sorted(quarantined.items())) or "none",
                *(_scalar(info.get(key)) for key in extra),
            ]
        )
    text = [
        4 + i
        for i, key in enumerate(extra)
        if any(isinstance(s.get(key), str) for s in splits.values())
    ]
    body = table(
        ["split", "samples", "quarantined", "reasons", *extra], rows, text_columns=(0, 3, *text)
    )
    return Section(slug(name), name, body + quarantine_block(outputs, name))


def _scalar(value: Any) -> Any:
    return value if isinstance(value, SCALARS) else None


def provenance_section(outputs: RunOutputs) -> Section:
    """Per registered stage: versions, config hash and the models it recorded at a glance; the
    full records folded. Which dataset, sources or settings matter is the stage's own section's
    business; here only what every stage records the same way."""
    rows, details = [], ""
    for stage in registry.registered():
        if not outputs.ran(stage):
            rows.append([stage, "not run", None, None, None])
            continue
        summary = outputs.summary(stage)
        recorded = outputs.provenance(stage)
        rows.append(
            [
                stage,
                summary.get("stage_version"),
                recorded.get("prep_version"),
                summary.get("config_hash"),
                "; ".join(model_records(recorded)) or "–",
            ]
        )
        kept = {k: v for k, v in summary.items() if k not in ("splits", "outputs")}
        details += pretty_json(
            {"summary": kept, "table_metadata": recorded, "runs": outputs.run_records(stage)},
            f"{stage}: summary, table metadata and run options",
        )
    body = table(["stage", "version", "prep", "config hash", "models"], rows, text_columns=(0, 4))
    return Section("provenance", "Provenance", body + details)


def model_records(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Every model a provenance records the framework's way (a mapping with ``model`` and,
    usually, ``revision``, as :class:`pipeline.models.ModelLocation` names one), labelled by
    where it sits, e.g. ``text_encoder: <model id or folder> sha256:…``."""
    if not isinstance(value, Mapping):
        return []
    if isinstance(value.get("model"), str):
        label = ".".join(path) or "model"
        return [f"{label}: {value['model']} {value.get('revision') or ''}".strip()]
    found = []
    for key in sorted(value, key=str):
        found += model_records(value[key], (*path, str(key)))
    return found
