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
from pipeline.video import is_system_file

# Folders of a release that hold only keypoint files, never a file a reader looks up; some hold
# millions of JSON files, so the walk does not enter them.
KEYPOINT_FOLDERS = (
    # How2Sign: download_how2sign.sh (how2sign/how2sign.github.io@f85816c) lines 196-231 untar
    # {split}_2D_keypoints.tar.gz into <split>/rgb_front/features/openpose_output
    "openpose_output",
    # WLASL: README.md (dxli94/WLASL@ac00e6b) line 127 unzips the body keypoints into
    # data/pose_per_individual_videos, one image_{:05d}_keypoints.json per frame
    # (code/TGCN/sign_dataset.py line 120)
    "pose_per_individual_videos",
)


class FileIndex:
    """Every file under ``root`` by name (one walk), with duplicates kept for the error.

    The walk follows symbolic links but enters each real folder once, so a link back up the
    tree (``ln -s . loop``) or a second link to the same folder neither loops nor counts its
    files twice; folders named in ``skip_folders`` (globs) are not entered, and system files
    (:func:`pipeline.video.is_system_file`, e.g. macOS ``._clip.mp4``) are not indexed.
    """

    def __init__(
        self,
        root: Path,
        suffixes: Iterable[str] | None = None,
        skip_folders: Iterable[str] = KEYPOINT_FOLDERS,
    ) -> None:
        if not root.is_dir():
            raise PrepError(f"--root must be the folder holding the release, got {root}")
        self.root = root
        wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
        skipped = tuple(skip_folders)
        self.by_name: dict[str, list[Path]] = {}
        for folder, files in _walk_once(root, skipped):
            for name in files:
                if is_system_file(name):
                    continue
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


def _walk_once(root: Path, skip_folders: tuple[str, ...]) -> Iterable[tuple[str, list[str]]]:
    """(folder, sorted file names) for every real folder under ``root``, in sorted order, each
    once: a folder already seen through another path (a symbolic link) is not entered again."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatch(d, g) for g in skip_folders))
        yield folder, sorted(files)
