"""Reading annotation files line by line (or CSV row by row), so one undecodable line or bad
row costs one sample, not the file."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator

from pipeline.errors import PrepError

MAX_FIELD_CHARS = (
    128 * 1024
)  # a longer field is a broken row (a quote never closed), not a sentence
_PARSER_FIELD_LIMIT = (
    64 * 1024 * 1024
)  # let csv read it whole, so the row can be rejected by itself


def _read(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PrepError(f"cannot read {path}: {exc.strerror}") from exc
    return raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw


def csv_rows(path: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(first line number, fields, problem) per CSV record, parsed by a real CSV parser: a quoted
    field may span lines. ``problem`` names invalid UTF-8 (``undecodable``), an oversized field
    or a row the parser rejects (``invalid: ...``); the rows after it are still read."""
    text = _read(path).decode("utf-8", errors="surrogateescape")
    csv.field_size_limit(max(csv.field_size_limit(), _PARSER_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, f"invalid: {exc}"
            start = reader.line_num + 1
            continue
        number, start = start, reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue
        if any("\udc80" <= ch <= "\udcff" for f in fields for ch in f):
            yield (
                number,
                [f.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for f in fields],
                "undecodable",
            )
        elif max(len(f) for f in fields) > MAX_FIELD_CHARS:
            yield (
                number,
                fields,
                f"invalid: a field of {max(len(f) for f in fields)} characters (limit {MAX_FIELD_CHARS})",
            )
        else:
            yield number, fields, None


def decoded_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, decoded_ok) for each non-empty line; bad UTF-8 is replaced, flagged."""
    raw = _read(path)
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, line.decode("utf-8"), True
        except UnicodeDecodeError:
            yield number, line.decode("utf-8", errors="replace"), False
