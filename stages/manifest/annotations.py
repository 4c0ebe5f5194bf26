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


# byte order marks of the encodings an annotation file may not use (UTF-32 first: its
# little-endian mark begins with UTF-16's)
FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
UTF8_BOM = b"\xef\xbb\xbf"
SNIFFED_BYTES = 4096
# text in UTF-16 or UTF-32 has a NUL in every second or fourth byte of ASCII; UTF-8 text has none
NUL_SHARE = 0.25


def _read(path: Path) -> bytes:
    """The file's bytes without a UTF-8 byte order mark; a file in another encoding is refused
    with the one-line reason, not read as broken UTF-8 (a header "lacking" every column)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PrepError(f"cannot read {path}: {exc.strerror}") from exc
    problem = encoding_problem(raw)
    if problem:
        raise PrepError(f"{path.name} {problem}: save it as UTF-8")
    return raw[len(UTF8_BOM) :] if raw.startswith(UTF8_BOM) else raw


def encoding_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not UTF-8 text, when its first bytes say so (a UTF-16/32 byte order mark,
    or NUL bytes where text has none), else None."""
    for bom, encoding in FOREIGN_BOMS:
        if raw.startswith(bom):
            return f"is {encoding} (byte order mark)"
    head = raw[:SNIFFED_BYTES]
    if head and head.count(0) >= NUL_SHARE * len(head):
        return f"is not UTF-8 text ({head.count(0)} NUL bytes in its first {len(head)}: UTF-16?)"
    return None


def csv_rows(
    path: Path, delimiter: str = ","
) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(first line number, fields, problem) per CSV record, parsed by a real CSV parser: a quoted
    field may span lines. ``problem`` names invalid UTF-8 (``undecodable``), an oversized field
    or a row the parser rejects (``invalid: ...``); the rows after it are still read."""
    text = _read(path).decode("utf-8", errors="surrogateescape")
    csv.field_size_limit(max(csv.field_size_limit(), _PARSER_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
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
