"""CSL-Daily as released: a label pickle (loaded data-only), a split file and JPEG frame folders."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.unpickle import load_data_pickle
from stages.manifest.annotations import decoded_lines
from stages.manifest.candidates import candidate, rejected


def read_csl_daily(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    labels_path = root / descriptor.layout["labels"]
    split_path = root / descriptor.layout["split_file"]
    for path in (labels_path, split_path):
        if not path.is_file():
            raise PrepError(
                f"layout not recognised: {path.relative_to(root)} not found under {root}"
            )
    info = _label_entries(load_data_pickle(labels_path), labels_path)
    frames = _frames_pattern(root, descriptor)
    candidates = []
    for number, text, ok in decoded_lines(split_path):
        fields = [f.strip() for f in text.split("|")]
        if fields == ["name", "split"]:
            continue
        if not ok or len(fields) != 2:
            reason, detail = (
                (m.UNDECODABLE_TEXT, "is not valid UTF-8")
                if not ok
                else (m.INVALID_FIELD, "is not name|split")
            )
            candidates.append(
                rejected(
                    fields[0], "unassigned", reason, f"{split_path.name} line {number} {detail}"
                )
            )
            continue
        name, split = fields
        entry = info.get(name)
        if entry is None:
            candidates.append(
                rejected(name, split, m.MISSING_FIELD, "no entry in the label pickle")
            )
            continue
        candidates.append(_candidate(name, split, entry, frames))
    return root, candidates


def _label_entries(labels: Any, path: Path) -> dict[str, dict]:
    if not isinstance(labels, dict) or not isinstance(labels.get("info"), list):
        raise PrepError(f"{path.name}: expected a dict whose 'info' is a list of samples")
    return {str(e["name"]): e for e in labels["info"] if isinstance(e, dict) and "name" in e}


def _frames_pattern(root: Path, descriptor: Descriptor) -> str:
    """Some copies nest the frame folders one level deeper (``sentence_frames-512x512/``)."""
    primary = descriptor.layout["frames"]
    alternative = descriptor.layout["frames_alternative"]
    alt_base = root / Path(alternative).parent
    return alternative if alt_base.is_dir() else primary


def _candidate(name: str, split: str, entry: dict, frames: str) -> dict:
    chars = entry.get("label_char") or []
    translation = "".join(str(c) for c in chars) if isinstance(chars, (list, tuple)) else str(chars)
    gloss = entry.get("label_gloss") or []
    gloss_text = " ".join(str(g) for g in gloss) if isinstance(gloss, (list, tuple)) else str(gloss)
    length = entry.get("length")
    return candidate(
        name,
        split,
        frames.format(name=name),
        translation,
        gloss=gloss_text or None,
        signer=None if entry.get("signer") is None else str(entry["signer"]),
        expected_frames=int(length) if isinstance(length, numbers.Real) else None,
        kind="frames",
    )
