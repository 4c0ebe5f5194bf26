"""``prep doctor`` check of the hand detector, shared by the stages that find hands
(hand-captions with the kinematic captioner, features with ``hands`` or ``hamer``).

Keypoints given as files replace MediaPipe, so then only their folder is checked.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.doctor import Check
from pipeline.errors import PrepError


def mediapipe_check(area: str, keypoints: str | None, needed: bool) -> Check:
    """The ``--hand-keypoints`` folder when given, else whether MediaPipe Hands imports; ``area``
    is the stage asking, so the line says who needs it."""
    if keypoints:
        folder = Path(keypoints).expanduser()
        return Check(
            area,
            "hand keypoints",
            folder.is_dir(),
            f"--hand-keypoints {folder} (instead of MediaPipe)",
            needed,
            f"place one <id>.npy of hand keypoints per clip in {folder}, or drop --hand-keypoints",
        )
    from stages.hands.detect import require_mediapipe

    try:
        mp = require_mediapipe()
    except PrepError as exc:
        return Check(area, "MediaPipe Hands", False, "not importable", needed, str(exc))
    return Check(
        area, "MediaPipe Hands", True, f"mediapipe {getattr(mp, '__version__', '?')}", needed
    )
