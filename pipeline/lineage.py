"""Lineage: what each stage's outputs were made from, and whether that still holds.

When a stage merges, its summary records, for every upstream stage it reads (its ``requires``
and, for a stage that collects exported columns, every stage that exports them), that stage's
version, configuration hash and a digest of its published files. A stage whose record no longer
matches its upstream as it is now is **stale**: its outputs disagree with the tables beside
them (new gloss ids, other captions), as ``dvc status`` would say of a pipeline step. ``prep
status`` and ``prep verify`` say so, and ``prep export`` and :func:`pipeline.loader.make_loader`
refuse stale outputs unless told to take them anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pipeline.errors import PrepError
from pipeline.layout import Layout

log = logging.getLogger(__name__)

SUMMARY_KEY = "lineage"
OWN_DIGEST = "outputs_digest"  # a summary's digest of its own stage's files, as merged
NOT_RUN = None  # an upstream that had not run when the stage merged


class StaleOutputs(PrepError):
    """Outputs made from upstream outputs that have changed since."""


def upstream_of(stage: str) -> list[str]:
    """The stages whose outputs ``stage`` reads, in run order."""
    from pipeline import registry

    stages = registry.registered()
    cls = stages[stage]
    read = set(cls.requires)
    if cls.collects_exports:
        read |= {s.name for s in registry.exporting_stages() if s.name != stage}
    return [name for name in registry.names() if name in read]


def output_digest(layout: Layout, stage: str) -> str:
    """sha256 over the files a stage publishes in its folder (tables, vocabulary, quarantine),
    names included; the summary itself is left out (it holds timings)."""
    digest = hashlib.sha256()
    folder = layout.stage_dir(stage)
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "summary.json"):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def identity(layout: Layout, stage: str) -> dict[str, Any] | None:
    """What a downstream stage records of ``stage``: None when it has not run."""
    summary = _summary(layout, stage)
    if summary is None:
        return NOT_RUN
    return {**declared_identity(summary), "digest": output_digest(layout, stage)}


def declared_identity(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stage's identity as its summary states it (the digest of its files when it merged):
    all a reader of a remote run, which cannot list a folder to hash it, has to compare."""
    if summary is None:
        return NOT_RUN
    return {
        "version": summary.get("stage_version"),
        "config_hash": summary.get("config_hash"),
        "digest": summary.get(OWN_DIGEST),
    }


def record(layout: Layout, stage: str) -> dict[str, Any]:
    """The lineage a stage's summary carries: each upstream's identity as it is now."""
    return {up: identity(layout, up) for up in upstream_of(stage)}


def stale_stages(layout: Layout) -> dict[str, str]:
    """Finished stages whose recorded upstream no longer matches, in run order, each with the
    reason in words (naming the upstream that changed, or the stale stage it read)."""
    return _stale(lambda stage: _summary(layout, stage), lambda up: identity(layout, up))


def stale_in_summaries(summaries: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    """:func:`stale_stages` of a run known only by its summaries (a remote one)."""
    return _stale(summaries.get, lambda up: declared_identity(summaries.get(up)))


def _stale(summary_of, identity_of) -> dict[str, str]:
    from pipeline import registry

    stale: dict[str, str] = {}
    current: dict[str, dict[str, Any] | None] = {}  # each upstream hashed once per call
    for stage in registry.names():
        summary = summary_of(stage)
        if summary is None or SUMMARY_KEY not in summary:
            continue  # not run, or made before lineage was recorded: nothing to compare
        for up, recorded in summary[SUMMARY_KEY].items():
            if up in stale:
                stale[stage] = f"it read {up}, which is stale"
                break
            if up not in current:
                current[up] = identity_of(up)
            if _differs(recorded, current[up]):
                stale[stage] = _why(up, recorded, current[up])
                break
    return stale


def _differs(recorded: dict | None, now: dict | None) -> bool:
    """A digest the summary does not state (merged before it did) is not compared."""
    if recorded is None or now is None or now.get("digest") is not None:
        return recorded != now
    return {**recorded, "digest": None} != now


def _why(up: str, recorded: dict | None, now: dict | None) -> str:
    if recorded is None:
        return f"{up} ran after it"
    if now is None:
        return f"{up}'s outputs are gone"
    if recorded.get("config_hash") != now.get("config_hash"):
        return f"{up} was rerun with other options after it"
    if recorded.get("version") != now.get("version"):
        return f"{up} was rerun by another prep version after it"
    return f"{up}'s outputs changed after it"


def refresh_command(layout: Layout, stage: str) -> str:
    """The command that brings a stale stage up to date (its options are in its run record)."""
    summary = _summary(layout, stage) or {}
    options = layout.run_record(stage, summary.get("config_hash", "?"))
    return f"prep run --stage {stage} --overwrite --out {layout.out} with the options in {options}"


def fresh_for_loading(root: Any, split: str, allow_stale: bool) -> dict[str, str]:
    """The stale stages of the run ``root`` (:mod:`pipeline.remote`) holds, local or remote,
    for :func:`pipeline.loader.make_loader`: refused unless ``allow_stale``, logged if taken."""
    from pipeline import registry

    what = f"make_loader({str(root)!r}, {split!r})"
    if not root.remote:
        layout = Layout(root.path)
        stale = stale_stages(layout)
        if not allow_stale:
            require_fresh(layout, what=what)
    else:
        stale = stale_in_summaries({s: root.read_summary(s) for s in registry.names()})
        if stale and not allow_stale:
            stage, why = next(iter(stale.items()))
            raise StaleOutputs(
                f"{what}: {stage} is stale ({why}); bring it up to date where the run was "
                f"prepared (prep status --out ... names the command), or pass allow_stale=True"
            )
    for stage, why in stale.items():
        log.warning("%s: %s is stale (%s); loading anyway (allow_stale=True)", what, stage, why)
    return stale


def require_fresh(layout: Layout, stages: list[str] | None = None, *, what: str) -> dict:
    """Raise :class:`StaleOutputs` (one line) when any of ``stages`` (default: all) is stale;
    returns the stale stages otherwise found (none)."""
    stale = stale_stages(layout)
    wanted = {s: why for s, why in stale.items() if stages is None or s in stages}
    if wanted:
        stage, why = next(iter(wanted.items()))
        raise StaleOutputs(
            f"{what}: {stage} is stale ({why}); bring it up to date: "
            f"{refresh_command(layout, stage)}, or pass {_override(what)} to use it anyway"
        )
    return wanted


def _override(what: str) -> str:
    return "allow_stale=True" if what.startswith("make_loader") else "--allow-stale"


def made_stale_by(layout: Layout, stage: str) -> dict[str, str]:
    """Stale stages after ``stage`` in run order: what its latest run left to redo."""
    from pipeline import registry

    later = registry.names()[registry.names().index(stage) + 1 :]
    return {s: why for s, why in stale_stages(layout).items() if s in later}


def _summary(layout: Layout, stage: str) -> dict[str, Any] | None:
    path = layout.summary(stage)
    return json.loads(path.read_text()) if path.is_file() else None
