"""What the motion-energy stage adds to ``prep doctor``.

Imported only when ``prep doctor`` calls the stage's hook (``pipeline.stage.hook``): the doctor
loads neither the stage's run-time code nor the report's plotting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.contract import Check

STAGE = "motion-energy"


def doctor_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """Whether ``--min-motion`` can be met with the manifest's frame selection: motion is measured
    between selected frames, so with ``--max-frames 1`` every clip has none and a positive
    threshold would quarantine the whole corpus."""
    threshold = float(options.get("min_motion") or 0.0)
    max_frames = options.get("max_frames")
    if threshold == 0:
        detail = "off: no clip is quarantined as still"
    else:
        detail = f"quarantines clips whose mean motion is below {threshold:g} grey levels"
    possible = threshold == 0 or max_frames is None or max_frames > 1
    fix = "select at least 2 frames per clip (--max-frames 2 or more), or pass --min-motion 0"
    return [Check(STAGE, "--min-motion", possible, detail, needed, fix)]
