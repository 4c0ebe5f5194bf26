"""``prep export``: run one registered exporter over a prepared ``--out`` into ``--to``.

The target is checked first: an empty or new folder is written; a folder holding an
unfinished export with the same format, settings and source resumes after its last finished
split; anything else is refused without ``--overwrite`` (files of others are never deleted).
The exporter checks the run before anything is written. ``.prep-export.json`` records what is
done; ``EXPORT.md`` says which run, stages, fields and files, and how to train on them.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
from pathlib import Path
from typing import Any

from pipeline import __version__, lineage
from pipeline.errors import PrepError
from pipeline.exporter import Exporter, ExportSettings, ExportSource
from pipeline.storage import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "prep.exporters"
RECORD = ".prep-export.json"
README = "EXPORT.md"


def format_names() -> list[str]:
    """The registered export formats (``prep.exporters`` entry points), sorted; none loaded."""
    return sorted({e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def _loaded(entry: importlib.metadata.EntryPoint) -> type[Exporter]:
    try:
        exporter = entry.load()
    except ImportError as exc:
        raise PrepError(f"exporter {entry.name} = {entry.value} fails to import: {exc}") from exc
    if not (isinstance(exporter, type) and issubclass(exporter, Exporter)):
        raise PrepError(f"exporter entry point {entry.value} is not an Exporter subclass")
    if exporter.name != entry.name:
        raise PrepError(
            f"exporter {entry.value} is named {exporter.name!r}, registered as {entry.name!r}"
        )
    return exporter


def exporter_class(name: str) -> type[Exporter]:
    """The exporter registered as ``name``; only its own module is imported."""
    entries = {e.name: e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if name not in entries:
        raise PrepError(
            f"unknown export format {name!r}; choose one of {', '.join(format_names())}"
        )
    return _loaded(entries[name])


def run_export(
    name: str,
    out: Path,
    target: Path,
    settings: ExportSettings,
    overwrite: bool = False,
    *,
    allow_stale: bool = False,
) -> Path:
    """Export ``out`` into ``target`` with exporter ``name``; returns ``EXPORT.md``. Stale
    outputs (an upstream stage rerun after them) are refused unless ``allow_stale``; then
    ``EXPORT.md`` names them."""
    exporter_cls = exporter_class(name)
    source = ExportSource(out)
    stale = lineage.stale_stages(source.layout)
    if not allow_stale:
        lineage.require_fresh(source.layout, what=f"prep export {name}")
    for stage, why in stale.items():
        log.warning(
            "export %s: %s is stale (%s); exported anyway (--allow-stale)", name, stage, why
        )
    unknown = sorted(set(settings.splits or ()) - set(source.splits))
    if unknown:
        raise PrepError(
            f"--splits {', '.join(unknown)}: not in the manifest ({', '.join(source.splits)})"
        )
    exporter = exporter_cls(source, target, settings)
    identity = {
        "format": name,
        "version": exporter_cls.version,
        "fields": list(exporter.fields),
        "splits": exporter.splits,
        "source": source_identity(source),
    }
    done = resumable_splits(target, identity, overwrite)
    exporter.check()
    for gap in exporter.gaps():
        log.warning("export %s: %s", name, gap)
    target.mkdir(parents=True, exist_ok=True)
    files: list[Path] = list(map(Path, done.get("files", [])))
    # recorded before the first file, so an export killed inside its first split resumes too
    atomic_write_json(target / RECORD, {"identity": identity, "done": done, "complete": False})
    for split in exporter.splits:
        if split in done.get("splits", []):
            log.info("export %s: split %s already written; skipped", name, split)
            continue
        files += exporter.export_split(split)
        done = {"splits": [*done.get("splits", []), split], "files": [str(f) for f in files]}
        atomic_write_json(target / RECORD, {"identity": identity, "done": done, "complete": False})
    files += exporter.finish()
    readme = target / README
    text = export_readme(exporter, source, identity, files, stale)
    atomic_write_bytes(readme, text.encode("utf-8"))
    done = {"splits": exporter.splits, "files": [str(f) for f in files]}
    atomic_write_json(target / RECORD, {"identity": identity, "done": done, "complete": True})
    return readme


def source_identity(source: ExportSource) -> dict[str, Any]:
    """Which run the files come from: each finished stage's version and configuration hash."""
    from pipeline import registry

    found = {}
    for stage in registry.names():
        summary = source.summary(stage)
        if summary:
            found[stage] = {
                "version": summary.get("stage_version"),
                "config_hash": summary.get("config_hash"),
                "plan_fingerprint": summary.get("plan_fingerprint"),
            }
    return found


def resumable_splits(target: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """What an earlier, unfinished export of the same identity finished; refuse a foreign folder."""
    if not target.exists() or not any(target.iterdir()):
        return {}
    if not target.is_dir():
        raise PrepError(f"--to {target} is a file, not a folder")
    try:
        record = json.loads((target / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        record = None
    if overwrite:
        return {}
    if record is None or record.get("identity") != identity:
        held = sum(1 for _ in target.iterdir())
        raise PrepError(
            f"--to {target} is not empty ({held} entries"
            f"{'' if record is None else ', an export with other settings or another run'}); "
            "pass --overwrite to write over it, or choose an empty folder"
        )
    if record.get("complete"):
        return {}  # the same export again: rewritten, byte-identical
    return record.get("done", {})


def trainer_link(trainer: str) -> str:
    """A GitHub link where ``trainer`` is an ``owner/repository`` name or a URL; else the name
    as written (a lab's exporter may name an in-house trainer)."""
    if trainer.startswith(("https://", "http://")):
        return f"<{trainer}>"
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+", trainer):
        return f"[{trainer}](https://github.com/{trainer})"
    return trainer


def export_readme(
    exporter: Exporter,
    source: ExportSource,
    identity: dict[str, Any],
    files: list[Path],
    stale: dict[str, str] | None = None,
) -> str:
    stages = "\n".join(
        f"- {stage}: version {info['version']}, configuration {info['config_hash']}"
        for stage, info in identity["source"].items()
    )
    listed = "\n".join(f"- `{f.relative_to(exporter.target)}`" for f in files)
    gaps = "\n".join(f"- {gap}" for gap in exporter.gaps()) or "None known."
    return (
        f"# {exporter.name} export of {source.out}\n\n"
        f"Written by prep {__version__}, exporter `{exporter.name}` version {exporter.version}, "
        f"for {trainer_link(exporter.trainer)}.\n\n"
        f"Dataset: {source.dataset}. Splits: {', '.join(exporter.splits)}. "
        f"Fields: {', '.join(exporter.fields) or 'none'}.\n\n"
        f"## From the prep run\n\n{stages}\n\n{_stale_note(stale or {})}"
        f"## Files\n\n{listed}\n\n"
        f"## Differences from the paper's inputs\n\n{gaps}\n\n"
        f"## Training on them\n\n{exporter.instructions().strip()}\n"
    )


def _stale_note(stale: dict[str, str]) -> str:
    if not stale:
        return ""
    listed = "\n".join(f"- {stage}: {why}" for stage, why in stale.items())
    return (
        "**Exported with `--allow-stale`**: these outputs were made before an upstream stage was "
        f"rerun, so they disagree with the tables beside them:\n\n{listed}\n\n"
    )
