"""Reading annotation files line by line, so one undecodable line costs one sample, not the file."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pipeline.errors import PrepError


def decoded_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, decoded_ok) for each non-empty line; bad UTF-8 is replaced, flagged."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PrepError(f"cannot read {path}: {exc.strerror}") from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, line.decode("utf-8"), True
        except UnicodeDecodeError:
            yield number, line.decode("utf-8", errors="replace"), False
