"""``prep report``: one static HTML page a researcher opens before training.

Per stage that ran: manifest statistics (clips, frames, durations, fps, quarantine),
pseudo-gloss vocabulary and out-of-vocabulary rates, hand coverage with a contact sheet of hand
crops, caption lengths and timelines, shard tables with feature statistics, and every stage's
provenance. Stages that did not run are shown as "not run". Images are PNG data URIs, so the
file opens anywhere without a server; nothing in the page depends on the time it was made.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.report.data import RunOutputs
from pipeline.report.frames import FrameReader
from pipeline.report.html import page
from pipeline.report.media import captions_section, hands_section
from pipeline.report.sections import (
    manifest_section,
    provenance_section,
    pseudo_gloss_section,
    shards_section,
)
from pipeline.storage import atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_CLIPS = 4


def write_report(out: Path, clips: int = DEFAULT_CLIPS, target: Path | None = None) -> Path:
    """Render the report of the run under ``out`` to ``target`` (default ``<out>/report/index.html``).

    ``clips``: how many clips the hand contact sheet and the caption timelines show.
    """
    outputs = RunOutputs(out)
    frames = FrameReader(outputs)
    sections = [
        manifest_section(outputs),
        pseudo_gloss_section(outputs),
        hands_section(outputs, frames, clips),
        captions_section(outputs, frames, clips),
        shards_section(outputs),
        provenance_section(outputs),
    ]
    dataset = outputs.provenance("manifest").get("dataset", "")
    ran = [s.title for s in sections if s.ran]
    subtitle = (
        f"{out} · dataset {dataset or 'unknown'} · sections with data: {', '.join(ran) or 'none'}"
    )
    target = target or outputs.layout.report_page()
    atomic_write_bytes(target, page(f"prep report: {out.name}", subtitle, sections).encode("utf-8"))
    log.info("report written to %s", target)
    return target
