"""``prep doctor`` check of the pose feature: MediaPipe Holistic's graph inside the installed
wheel, or the ``--pose-keypoints`` folder that replaces it; and pose-format for ``--pose-files``.

Only files and package metadata are looked at: MediaPipe is not imported (it is slow to load).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.doctor import Check
from stages.pose.detect import INSTALL_HINT
from stages.pose.pose_files import POSE_FORMAT_HINT

HOLISTIC_GRAPH = ("modules", "holistic_landmark", "holistic_landmark_cpu.binarypb")


def pose_checks(area: str, options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The keypoints folder when given, else MediaPipe with its Holistic graph; plus pose-format
    when ``.pose`` files are asked for."""
    keypoints = options.get("pose_keypoints")
    if keypoints:
        folder = Path(keypoints).expanduser()
        checks = [
            Check(
                area,
                "pose keypoints",
                folder.is_dir(),
                f"--pose-keypoints {folder} (instead of MediaPipe)",
                needed,
                f"place one <id>.npy of COCO-WholeBody keypoints per clip in {folder}, "
                "or drop --pose-keypoints",
            )
        ]
    else:
        checks = [holistic_check(area, needed)]
    if options.get("pose_files"):
        found = importlib.util.find_spec("pose_format") is not None
        detail = f"pose-format {_version('pose-format')}" if found else "not installed"
        checks.append(Check(area, "pose-format", found, detail, needed, POSE_FORMAT_HINT))
    return checks


def holistic_check(area: str, needed: bool) -> Check:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return Check(area, "MediaPipe Holistic", False, "not installed", needed, INSTALL_HINT)
    graph = Path(next(iter(spec.submodule_search_locations))).joinpath(*HOLISTIC_GRAPH)
    if not graph.is_file():
        return Check(
            area,
            "MediaPipe Holistic",
            False,
            f"mediapipe {_version('mediapipe')} without {graph.name}",
            needed,
            INSTALL_HINT,
        )
    return Check(area, "MediaPipe Holistic", True, f"mediapipe {_version('mediapipe')}", needed)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"
