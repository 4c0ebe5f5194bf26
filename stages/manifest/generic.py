"""Any corpus: a CSV (header row) or JSONL file with id, path, text, language, split per sample.

The file is UTF-8 (a byte order mark is fine); a CSV is comma-separated, or separated by ``;``
(spreadsheets in German and other locales write it), a tab or ``|`` when its header has every
column under that delimiter and not under the comma.

Optional fields: gloss, signer, fps, start, end (seconds, for segments of a longer video).
``fps`` (1-240) times frame folders; a video file's frames are timed by its own timestamps.
Paths are relative to the annotation file's folder, or absolute inside it: one that leaves
that folder is quarantined (``path_escapes_root``), so an annotation file cannot read elsewhere.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from pipeline import manifest as m
from pipeline.errors import PrepError
from stages.manifest.annotations import csv_rows, decoded_lines
from stages.manifest.candidates import candidate, rejected

REQUIRED = ("id", "path", "text", "language", "split")
NUMERIC = ("fps", "start", "end")
OTHER_DELIMITERS = (";", "\t", "|")

log = logging.getLogger(__name__)


def read_generic(root: Path, descriptor: object = None) -> tuple[Path, list[dict]]:
    """Returns (folder that relative paths start from, candidates in file order)."""
    if root.is_dir():
        raise PrepError(
            f"--root for the generic dataset must be a .csv or .jsonl file, got a folder: {root}"
        )
    if not root.is_file():
        raise PrepError(f"annotation file not found: {root}")
    if root.suffix.lower() == ".csv":
        records = _csv_records(root)
    elif root.suffix.lower() in (".jsonl", ".json"):
        records = _jsonl_records(root)
    else:
        raise PrepError(f"layout not recognised: {root.name} is neither .csv nor .jsonl")
    return root.parent, [_candidate(where, record, ok) for where, record, ok in records]


def _header(path: Path, delimiter: str) -> list[str] | None:
    rows = csv_rows(path, delimiter)
    return next((fields for _, fields, problem in rows if problem is None), None)


def _missing(header: list[str]) -> list[str]:
    return [f for f in REQUIRED if f not in header]


def _delimiter(path: Path) -> str:
    """The comma, or the one other delimiter under which the header has more of the required
    columns (all of them, or the error names that delimiter and what it still lacks)."""
    header = _header(path, ",")
    if header is None:
        raise PrepError(f"{path.name} is empty or has no readable header row")
    if not _missing(header):
        return ","
    best, fewest = ",", _missing(header)
    for delimiter in OTHER_DELIMITERS:
        missing = _missing(_header(path, delimiter) or [])
        if len(missing) < len(fewest):
            best, fewest = delimiter, missing
    if fewest:
        named = "" if best == "," else f" (read with {best!r} as delimiter)"
        raise PrepError(f"{path.name}: header{named} lacks column(s) {', '.join(fewest)}")
    log.info("%s is separated by %r, not commas: read so", path.name, best)
    return best


def _csv_records(path: Path):
    rows = csv_rows(path, _delimiter(path))
    header = next((fields for _, fields, problem in rows if problem is None), None)
    for number, fields, problem in rows:
        where = f"{path.name} line {number}"
        if problem and problem.startswith("invalid"):
            yield (
                where,
                {
                    "__invalid__": problem.removeprefix("invalid: "),
                    **dict(zip(header, fields or [])),
                },
                True,
            )
        else:
            yield where, dict(zip(header, fields)), problem is None


def _jsonl_records(path: Path):
    for number, text, ok in decoded_lines(path):
        where = f"{path.name} line {number}"
        try:
            record = json.loads(text)
        except ValueError:
            yield where, {"__invalid__": "is not valid JSON"}, ok
            continue
        if not isinstance(record, dict):
            record = {"__invalid__": "is not a JSON object"}
        yield where, {k: "" if v is None else str(v) for k, v in record.items()}, ok


def _candidate(where: str, record: dict, decoded_ok: bool) -> dict:
    sample_id = (record.get("id") or "").strip()
    split = (record.get("split") or "").strip() or "unassigned"
    if not decoded_ok:
        return rejected(sample_id, split, m.UNDECODABLE_TEXT, f"{where} is not valid UTF-8")
    if "__invalid__" in record:
        return rejected(sample_id, split, m.INVALID_FIELD, f"{where} {record['__invalid__']}")
    missing = [f for f in REQUIRED if not (record.get(f) or "").strip() and f != "text"]
    if missing:
        return rejected(sample_id, split, m.MISSING_FIELD, f"{where} lacks {', '.join(missing)}")
    numbers = {}
    for name in NUMERIC:
        raw = (record.get(name) or "").strip()
        try:
            numbers[name] = float(raw) if raw else None
        except ValueError:
            return rejected(
                sample_id, split, m.INVALID_FIELD, f"{where}: {name}={raw!r} is not a number"
            )
        if numbers[name] is not None and (not math.isfinite(numbers[name]) or numbers[name] < 0):
            return rejected(
                sample_id, split, m.INVALID_FIELD, f"{where}: {name}={raw!r} is out of range"
            )
    low, high = m.FPS_RANGE
    if numbers["fps"] is not None and not low <= numbers["fps"] <= high:
        return rejected(
            sample_id,
            split,
            m.INVALID_FIELD,
            f"{where}: fps={numbers['fps']:g} outside {low}-{high}",
        )
    if (
        numbers["start"] is not None
        and numbers["end"] is not None
        and numbers["end"] <= numbers["start"]
    ):
        return rejected(sample_id, split, m.INVALID_FIELD, f"{where}: end is not after start")
    path = record["path"].strip()
    return candidate(
        sample_id,
        split,
        path,
        record.get("text"),
        language=record["language"].strip(),
        gloss=(record.get("gloss") or "").strip() or None,
        signer=(record.get("signer") or "").strip() or None,
        **numbers,
    )
