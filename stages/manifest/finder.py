"""Finding a release's files by their official names anywhere under ``--root``.

Corpora arrive unpacked in many arrangements (an extra top folder, splits in separate
archives, videos beside or below the annotations), so the adapters of How2Sign, OpenASL,
YouTube-ASL, WLASL and AUTSL look files up by name, recursively, instead of by one fixed
layout. A name found twice is an error naming both paths: which one is meant is the user's
call, never a silent first match.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import PrepError


class FileIndex:
    """Every file under ``root`` by name (one walk), with duplicates kept for the error."""

    def __init__(self, root: Path, suffixes: Iterable[str] | None = None) -> None:
        if not root.is_dir():
            raise PrepError(f"--root must be the folder holding the release, got {root}")
        self.root = root
        wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
        self.by_name: dict[str, list[Path]] = {}
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                if wanted is None or name.lower().endswith(wanted):
                    self.by_name.setdefault(name, []).append(Path(folder) / name)

    def get(self, name: str) -> Path | None:
        """The one file called ``name``; None when absent; an error when there are two."""
        found = self.by_name.get(name, [])
        if len(found) > 1:
            listed = " and ".join(str(p.relative_to(self.root)) for p in found[:2])
            raise PrepError(f"{name} is under --root twice ({listed}); keep one")
        return found[0] if found else None

    def require(self, name: str, what: str) -> Path:
        found = self.get(name)
        if found is None:
            raise PrepError(f"no {name} under {self.root} ({what})")
        return found

    def matching(self, pattern: str) -> list[Path]:
        """Every file whose name matches the glob ``pattern``, each name at most once."""
        return [self.get(name) for name in sorted(self.by_name) if fnmatch.fnmatch(name, pattern)]

    def relative(self, path: Path, base: Path) -> str:
        """``path`` as the manifest's ``source_path``: relative to ``base``, forward slashes."""
        return path.relative_to(base).as_posix()
