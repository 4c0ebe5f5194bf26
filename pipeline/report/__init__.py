"""``prep report``: one static HTML page a researcher opens before training.

Per registered stage, in run order, the sections the stage renders itself
(``Stage.report_sections``: statistics, plots, contact sheets, timelines) or, for a stage
that brings none, a generic table of its summary; stages that did not run are shown as "not
run"; last, every stage's provenance. Stages are found through the registry only, so a lab's
own stage gets a place on the page without an edit here. Images are PNG data URIs, so the file
opens anywhere without a server; nothing in the page depends on the time it was made.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import registry
from pipeline.report.data import RunOutputs
from pipeline.report.frames import FrameReader
from pipeline.report.html import Section, page
from pipeline.report.sections import provenance_section, summary_section
from pipeline.storage import atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_CLIPS = 4


def write_report(out: Path, clips: int = DEFAULT_CLIPS, target: Path | None = None) -> Path:
    """Render the report of the run under ``out`` to ``target`` (default ``<out>/report/index.html``).

    ``clips``: how many clips the sections that show video (contact sheets, timelines) show.
    """
    outputs = RunOutputs(out)
    frames = FrameReader(outputs)
    sections: list[Section] = []
    for stage in registry.registered().values():
        own = stage.report_sections(outputs, frames, clips)
        sections += own if own is not None else [summary_section(outputs, stage)]
    sections.append(provenance_section(outputs))
    dataset = outputs.provenance(outputs.manifest_stage).get("dataset", "")
    ran = [s.title for s in sections if s.ran]
    subtitle = (
        f"{out} · dataset {dataset or 'unknown'} · sections with data: {', '.join(ran) or 'none'}"
    )
    target = target or outputs.layout.report_page()
    atomic_write_bytes(target, page(f"prep report: {out.name}", subtitle, sections).encode("utf-8"))
    log.info("report written to %s", target)
    return target
