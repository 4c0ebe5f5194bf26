"""Annotation-level checks shared by every dataset reader, done before any file is opened.

A candidate is a plain dict (it travels inside work units): ``id``, ``split``, ``source_path``
(relative to the root, POSIX), ``translation``, optional ``gloss``/``signer``/``fps``/
``start``/``end``/``expected_frames``/``language``, and ``reject`` = [reason, detail] or None.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Iterable

from pipeline import manifest as m

SAFE_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
SAFE_SPLIT = re.compile(r"^[a-z0-9_\-]+$")


def candidate(sample_id: str, split: str, source_path: str, translation: str | None, **extra: Any) -> dict:
    row = {"id": sample_id, "split": split, "source_path": source_path, "translation": translation}
    row.update(extra)
    row.setdefault("reject", None)
    return row


def rejected(sample_id: str, split: str, reason: str, detail: str, source_path: str | None = None) -> dict:
    return candidate(sample_id, split, source_path or "", None, reject=[reason, detail])


def id_problem(sample_id: str) -> str | None:
    """Why an id cannot name files and shard keys, or None when it is safe."""
    if not sample_id:
        return "empty id"
    if "/" in sample_id or "\\" in sample_id:
        return f"id {sample_id!r} contains a path separator"
    if ".." in sample_id or sample_id.startswith("."):
        return f"id {sample_id!r} contains '..' or starts with a dot"
    if not SAFE_ID.match(sample_id):
        return f"id {sample_id!r} has characters outside [A-Za-z0-9_.-]"
    return None


def path_problem(source_path: str) -> str | None:
    """Relative annotation paths must stay inside the dataset root."""
    path = PurePosixPath(source_path.replace("\\", "/"))
    if path.is_absolute():
        return None  # absolute paths are the user's explicit choice (generic corpora)
    if ".." in path.parts:
        return f"path {source_path!r} leaves the dataset root"
    return None


def check_candidates(candidates: Iterable[dict]) -> list[dict]:
    """Reject unsafe ids and paths, empty text and duplicate ids (the first occurrence wins)."""
    seen: dict[str, str] = {}
    checked = []
    for cand in sorted(candidates, key=lambda c: m.split_order(c["split"])):  # stable: keeps file order
        if cand["reject"] is None:
            cand["reject"] = _first_problem(cand, seen)
        seen.setdefault(cand["id"], cand["split"])
        checked.append(cand)
    return checked


def _first_problem(cand: dict, seen: dict[str, str]) -> list[str] | None:
    problem = id_problem(cand["id"])
    if problem:
        return [m.UNSAFE_ID, problem]
    if not SAFE_SPLIT.match(cand["split"]):
        return [m.UNKNOWN_SPLIT, f"split name {cand['split']!r} is not a simple lower-case name"]
    if cand["id"] in seen:
        return [m.DUPLICATE_ID, f"id already used in split {seen[cand['id']]}"]
    problem = path_problem(cand["source_path"])
    if problem:
        return [m.PATH_ESCAPES_ROOT, problem]
    if cand["translation"] is None or not cand["translation"].strip():
        return [m.EMPTY_TEXT, "translation is empty"]
    return None
