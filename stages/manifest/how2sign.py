"""How2Sign as released: the re-aligned translation files and either the sentence clips or the
full videos, each found by its official name anywhere under ``--root``.

The re-aligned files are tab-separated despite their ``.csv`` name; their times are seconds on
the full video ``VIDEO_NAME``. The release also ships one clip per sentence
(``SENTENCE_NAME.mp4``), preferred when present: the clip is then the whole sample and the times
are not applied to it (they would count from the start of the full video, not of the clip).
Without the clip, the full video ``VIDEO_NAME.mp4`` is cut by the re-aligned times, keeping the
frames presented in [start, end) as ``ffmpeg -ss -to`` does (the release publishes no script
that cut its clips: how2sign/how2sign-data holds only ``download_how2sign.sh``), and the probe
quarantines a time past its end (``segment_out_of_range``). A row with neither file is
quarantined as ``video_unavailable`` (the train file has more rows than the release has train clips).
The release calls its dev split ``val``; the manifest calls it ``dev``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from stages.manifest.annotations import decoded_lines
from stages.manifest.candidates import candidate, rejected
from stages.manifest.finder import FileIndex

COLUMNS = (
    "VIDEO_ID",
    "VIDEO_NAME",
    "SENTENCE_ID",
    "SENTENCE_NAME",
    "START_REALIGNED",
    "END_REALIGNED",
    "SENTENCE",
)
# a reason of its own: the annotation is fine, the release (or the download) lacks its video


def read_how2sign(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    """Candidates of every split whose re-aligned file is under ``root``, in file order;
    ``source_path`` values are relative to ``root``."""
    index = FileIndex(root, suffixes=(".csv", ".mp4"))
    pattern = descriptor.layout["annotations"]
    files = {
        split: index.get(pattern.format(split=official))
        for official, split in descriptor.layout["splits"].items()
    }
    if not any(files.values()):
        names = ", ".join(pattern.format(split=s) for s in descriptor.layout["splits"])
        raise PrepError(f"layout not recognised: none of {names} under {root}")
    candidates = []
    for split, path in files.items():
        if path is not None:
            for where, record, problem in tab_records(path, COLUMNS):
                candidates.append(_candidate(index, root, split, where, record, problem))
    return root, candidates


def _candidate(
    index: FileIndex,
    root: Path,
    split: str,
    where: str,
    record: dict[str, str],
    problem: list[str] | None,
) -> dict:
    name = record.get("SENTENCE_NAME", "").strip()
    if problem:
        return rejected(name, split, *problem)
    if not name:
        return rejected(name, split, m.MISSING_FIELD, f"{where} has no SENTENCE_NAME")
    clip = index.get(f"{name}.mp4")
    if clip is not None:
        return candidate(name, split, index.relative(clip, root), record["SENTENCE"])
    video_name = record["VIDEO_NAME"].strip()
    video = index.get(f"{video_name}.mp4") if video_name else None
    if video is None:
        detail = f"{where}: neither {name}.mp4 nor {video_name}.mp4 is under --root"
        return rejected(name, split, m.VIDEO_UNAVAILABLE, detail)
    times = segment_times(record["START_REALIGNED"], record["END_REALIGNED"])
    if isinstance(times, str):
        return rejected(name, split, m.INVALID_FIELD, f"{where}: {times}")
    start, end = times
    source = index.relative(video, root)
    return candidate(name, split, source, record["SENTENCE"], start=start, end=end)


def segment_times(
    start: str, end: str, parse: Callable[[str], float] = float, form: str = "seconds"
) -> tuple[float, float] | str:
    """(start, end) in seconds read by ``parse``, or why they cannot cut a segment: a time that
    does not parse, is negative, or an end not after the start would cut nothing or the wrong
    signing."""
    values = []
    for label, text in (("start", start.strip()), ("end", end.strip())):
        try:
            value = parse(text)
        except ValueError:
            return f"{label} time {text!r} is not in {form}"
        if not math.isfinite(value) or value < 0:
            return f"{label} time {text!r} is out of range"
        values.append(value)
    if values[1] <= values[0]:
        return f"end {values[1]:g} s is not after start {values[0]:g} s"
    return values[0], values[1]


def tab_records(
    path: Path, columns: tuple[str, ...]
) -> Iterator[tuple[str, dict[str, str], list[str] | None]]:
    """(where, fields by column name, rejection or None) per data line of a tab-separated file
    with a header row. Columns are found by name, so an added column does not shift the others.
    Each line is read by itself, so a stray quote or a bad byte costs that line, not the rest."""
    lines = list(decoded_lines(path))
    header = [f.strip() for f in unquoted_fields(lines[0][1])] if lines else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise PrepError(f"{path.name}: header lacks column(s) {', '.join(missing)}")
    for number, text, ok in lines[1:]:
        where = f"{path.name} line {number}"
        fields = unquoted_fields(text)
        record = dict(zip(header, fields))
        if not ok:
            yield where, record, [m.UNDECODABLE_TEXT, f"{where} is not valid UTF-8"]
        elif len(fields) != len(header):
            detail = f"{where} has {len(fields)} fields, expected {len(header)}"
            yield where, record, [m.INVALID_FIELD, detail]
        else:
            yield where, record, None


def unquoted_fields(line: str) -> list[str]:
    """A line's tab-separated fields, each unquoted where a CSV writer quoted it (a field wrapped
    in quotation marks, with inner ones doubled), as pandas reads these files for the published
    models; a sentence that merely starts and ends with a quotation mark keeps its quotes."""
    fields = []
    for field in line.split("\t"):
        inner = field[1:-1]
        quoted = len(field) >= 2 and field[0] == field[-1] == '"'
        unquoted = quoted and '"' not in inner.replace('""', "")
        fields.append(inner.replace('""', '"') if unquoted else field)
    return fields
