"""The types the stage contract (:mod:`pipeline.stage`) speaks in: what a doctor check, a verify
report and a report section are, and what a report hook may read of a run.

They live in this leaf module, which imports nothing of prep, so the contract depends on no
command's implementation (``prep doctor``, ``verify``, ``report`` import the contract, never the
reverse) and no import circle runs through type annotations either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

NOT_USED = "-"
PER_CLIP, PER_FRAME = "clip", "frame"  # an exported array column's kind (pipeline.stage)
MISSING = "missing"  # a shard sample's json: exported column -> why an upstream stage left it out
MAX_LISTED = 20  # problems listed per split report; more are counted in one line


@dataclass(frozen=True)
class Check:
    """One line of ``prep doctor``; ``needed`` checks that fail make the configuration unable
    to run."""

    area: str
    component: str
    ok: bool
    detail: str
    needed: bool = False
    fix: str = ""
    applies: bool = True  # False: not configured or not used here (shown as "-")

    @property
    def status(self) -> str:
        if not self.applies:
            return NOT_USED
        if self.ok:
            return "ok"
        return "MISSING" if self.needed else "unavailable"


@dataclass
class SplitReport:
    """One row of ``prep verify``: a stage's split, what was re-read and every problem found."""

    split: str
    stage: str = ""
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    quarantined: int = 0  # samples the stage quarantined, beside its outputs
    problems: list[str] = field(default_factory=list)

    @property
    def quarantine_share(self) -> float:
        total = self.samples + self.quarantined
        return self.quarantined / total if total else 0.0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)
        elif len(self.problems) == MAX_LISTED:
            self.problems.append("… further problems not listed")


@dataclass
class Section:
    """One section of ``prep report``'s page: an anchor, a title and its HTML."""

    slug: str
    title: str
    body: str
    ran: bool = True


class RunOutputs(Protocol):
    """What a report hook reads of a finished run (:class:`pipeline.report.data.RunOutputs`)."""

    out: Path

    @property
    def manifest_stage(self) -> str: ...

    @property
    def manifest_rows(self) -> dict[tuple[str, str], dict]: ...

    @property
    def base_dir(self) -> Path | None: ...

    def ran(self, stage: str) -> bool: ...

    def summary(self, stage: str) -> dict[str, Any]: ...

    def splits(self, stage: str | None = None) -> list[str]: ...

    def table(self, stage: str, split: str, side: str = "") -> list[dict]: ...

    def quarantine(self, stage: str) -> list[dict]: ...

    def provenance(self, stage: str) -> dict[str, Any]: ...

    def shard_index(self, split: str) -> dict[str, Any] | None: ...


class FrameReader(Protocol):
    """Frames of a sample for a report (:class:`pipeline.report.frames.FrameReader`)."""

    def read(self, split: str, sample_id: str, frame_numbers: list[int]) -> tuple[list, str]: ...
