"""``prep doctor`` checks of the manifest stage: whether ``--root`` names something that exists.

Only the path is looked at; the dataset's layout is checked by the run itself, which says
precisely which file or column is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.doctor import Check


def doctor_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The ``--root`` line; shown as not used when no root is given (e.g. ``prep doctor`` alone),
    and needed only when the manifest stage runs with one."""
    root = options["root"]
    return [
        Check(
            "manifest",
            "--root",
            root is not None and Path(root).expanduser().exists(),
            str(root) if root else "not given",
            needed and root is not None,
            f"no such file or folder: {root}; pass the dataset's root (generic: its CSV/JSONL)",
            applies=root is not None,
        )
    ]
