"""The convention every benchmark script in bench/ follows, so ``bench/all.py`` can collect them.

A benchmark script:

- is a file ``bench/<name>.py`` (names starting with ``_`` and ``all.py`` are not benchmarks),
  runnable as ``python bench/<name>.py`` with no arguments (its defaults are the reported run);
- prints its own human-readable lines or tables, as it always has;
- calls :func:`record` once per headline figure::

      from _results import record
      record("decode", "video h264 540x720, 600 frames", "728 frames/s", "ffmpeg -threads 1: 933 frames/s",
             0.78, ">= 0.9")

  ``prep`` and ``baseline`` are short display strings with their unit (``None`` when there is no
  baseline), ``ratio`` is prep relative to the baseline in the direction the goal names (``None``
  without one), ``goal`` says what ratio is good (``">= 0.9"``, ``"<= 1.15"``; ``None`` if none);
- exits non-zero when it cannot measure (``bench/all.py`` then reports it as failed, with the
  last line of its stderr as the reason).

When the environment variable ``PREP_BENCH_JSON`` names a file, :func:`record` appends the
figure to it as one JSON line (keys ``bench, measure, prep, baseline, ratio, goal``); without
it, :func:`record` does nothing, so a script run by hand prints exactly what it printed before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_ENV = "PREP_BENCH_JSON"
REPO = Path(__file__).resolve().parent.parent


def record(
    bench: str, measure: str, prep: str, baseline: str | None, ratio: float | None, goal: str | None
) -> None:
    """Append one figure to ``$PREP_BENCH_JSON`` (one JSON line) when that variable is set."""
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    row = {
        "bench": bench,
        "measure": measure,
        "prep": prep,
        "baseline": baseline,
        "ratio": None if ratio is None else round(float(ratio), 3),
        "goal": goal,
    }
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
