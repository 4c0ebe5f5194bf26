"""A unit's journal: finished pieces of a unit appended as JSON lines and fsynced, so a crash
mid-unit loses at most the piece in flight (the hand-captions stage journals each batch of
chunks). The first line names the settings and inputs; a journal made with others is ignored."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable


class UnitJournal:
    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path, self.identity = path, identity
        self.records: list[dict[str, Any]] = self._read()
        if not self.records and not self._matches():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write([{"journal": identity}], mode="w")

    def _matches(self) -> bool:
        return self.path.is_file() and self._lines()[:1] == [{"journal": self.identity}]

    def _lines(self) -> list[dict[str, Any]]:
        """Whole lines only: a line torn by a crash (no newline, or not JSON) ends the journal."""
        lines = []
        with open(self.path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    break
        return lines

    def _read(self) -> list[dict[str, Any]]:
        if not self._matches():
            return []
        lines = self._lines()
        self._truncate_to(len(lines))
        return lines[1:]

    def _truncate_to(self, count: int) -> None:
        with open(self.path, "rb") as handle:
            size = sum(len(line) for _, line in zip(range(count), handle))
        os.truncate(self.path, size)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        self._write(records, mode="a")
        self.records += records

    def _write(self, records: list[dict[str, Any]], mode: str) -> None:
        with open(self.path, mode, encoding="utf-8") as handle:
            handle.write(
                "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
            )
            handle.flush()
            os.fsync(handle.fileno())
