"""Annotation-level checks shared by every dataset reader, done before any file is opened.

A candidate is a plain dict (it travels inside work units): ``id``, ``split``, ``source_path``
(relative to the root, POSIX), ``translation``, optional ``gloss``/``signer``/``fps``/
``start``/``end``/``expected_frames``/``language``, and ``reject`` = [reason, detail] or None.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from pipeline import manifest as m
from stages.manifest.text import normalised

SAFE_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
SAFE_SPLIT = re.compile(r"^[a-z0-9_\-]+$")
UNASSIGNED_SPLIT = "unassigned"  # where samples with no usable split name are counted
# an id names files (``<id>.pose``, ``<id>.npy``, ``<id>.jpg`` folders) and a file name has at
# most 255 bytes on ext4, XFS and NTFS: the cap leaves room for any suffix an exporter adds
MAX_ID_CHARS = 200


def candidate(
    sample_id: str, split: str, source_path: str, translation: str | None, **extra: Any
) -> dict:
    row = {"id": sample_id, "split": split, "source_path": source_path, "translation": translation}
    row.update(extra)
    row.setdefault("reject", None)
    return row


def rejected(
    sample_id: str, split: str, reason: str, detail: str, source_path: str | None = None
) -> dict:
    return candidate(sample_id, split, source_path or "", None, reject=[reason, detail])


def id_problem(sample_id: str) -> str | None:
    """Why an id cannot name files and shard keys, or None when it is safe."""
    if not sample_id:
        return "empty id"
    if len(sample_id) > MAX_ID_CHARS:
        return (
            f"id {sample_id[:40]!r}... has {len(sample_id)} characters, over the cap of "
            f"{MAX_ID_CHARS} (it names files, limited to 255 bytes)"
        )
    if "/" in sample_id or "\\" in sample_id:
        return f"id {sample_id!r} contains a path separator"
    if ".." in sample_id or sample_id.startswith("."):
        return f"id {sample_id!r} contains '..' or starts with a dot"
    if not SAFE_ID.match(sample_id):
        return f"id {sample_id!r} has characters outside [A-Za-z0-9_.-]"
    return None


def path_problem(source_path: str, root: Path | None = None) -> str | None:
    """Annotation paths must stay inside the dataset root: no ``..``, and an absolute path only
    when it lies under ``root`` (by name or once resolved, so symlinked roots still work)."""
    path = PurePosixPath(source_path.replace("\\", "/"))
    if ".." in path.parts:
        return f"path {source_path!r} leaves the dataset root"
    if path.is_absolute() and not (root is not None and _inside(Path(source_path), root)):
        return f"absolute path {source_path!r} is outside the dataset root {root}"
    return None


def _inside(path: Path, root: Path) -> bool:
    return path.is_relative_to(root) or path.resolve().is_relative_to(root.resolve())


def check_candidates(
    candidates: Iterable[dict], root: Path | None = None, language: str | None = None
) -> list[dict]:
    """Reject unsafe ids, splits and paths, empty text and duplicate ids (the first occurrence wins).

    Every reader's text enters the manifest here, so its text and gloss are put in the one
    normal form (:mod:`stages.manifest.text`) first; ``language`` is the dataset's, for
    samples that name none. A split name that is not a plain name never reaches a path: its
    samples are counted under ``unassigned``. Absolute paths are checked against ``root``
    (refused without one).
    """
    seen: dict[str, str] = {}
    checked = []
    for cand in sorted(
        candidates, key=lambda c: m.split_order(c["split"])
    ):  # stable: keeps file order
        _normalise_text(cand, cand.get("language") or language)
        split_issue = _contain_split(cand)
        if cand["reject"] is None:
            cand["reject"] = _first_problem(cand, seen, root, split_issue)
        elif split_issue:
            cand["reject"] = [cand["reject"][0], f"{cand['reject'][1]}; {split_issue}"]
        seen.setdefault(cand["id"], cand["split"])
        checked.append(cand)
    return checked


def _normalise_text(cand: dict, language: str | None) -> None:
    """The translation and gloss in normal form; a gloss left empty by it is no gloss."""
    cand["translation"] = normalised(cand["translation"], language)
    gloss = normalised(cand.get("gloss"), language)
    if "gloss" in cand:
        cand["gloss"] = gloss if gloss and gloss.strip() else None


def _contain_split(cand: dict) -> str | None:
    """Moves a candidate whose split name could leave the output folder to ``unassigned``."""
    if SAFE_SPLIT.match(cand["split"]):
        return None
    problem = f"split name {cand['split']!r} is not a simple lower-case name"
    cand["split"] = UNASSIGNED_SPLIT
    return problem


def _first_problem(
    cand: dict, seen: dict[str, str], root: Path | None, split_issue: str | None
) -> list[str] | None:
    problem = id_problem(cand["id"])
    if problem:
        return [m.UNSAFE_ID, problem]
    if split_issue:
        return [m.UNKNOWN_SPLIT, split_issue]
    if cand["id"] in seen:
        return [m.DUPLICATE_ID, f"id already used in split {seen[cand['id']]}"]
    problem = path_problem(cand["source_path"], root)
    if problem:
        return [m.PATH_ESCAPES_ROOT, problem]
    if cand["translation"] is None or not cand["translation"].strip():
        return [m.EMPTY_TEXT, "translation is empty"]
    return None
