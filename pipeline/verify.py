"""``prep verify``: every finished stage re-reads its published outputs with its own checks
(:meth:`pipeline.stage.Stage.verify`), and every split's quarantine share is held against a
limit: a split of mostly unreadable clips is not one to train on.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import lineage
from pipeline.contract import SplitReport
from pipeline.errors import PrepError
from pipeline.layout import Layout


def verify(out: Path, max_quarantine_share: float = 0.2) -> list[SplitReport]:
    """Every finished stage's reports, in run order; a split whose quarantine passes
    ``max_quarantine_share`` of its samples is a problem too."""
    from pipeline import registry

    layout = Layout(out)
    finished = [s for s in registry.registered().values() if layout.summary(s.name).is_file()]
    if not finished:
        raise PrepError(f"nothing to verify under {out}: no stage has finished")
    reports = []
    for stage in finished:
        for report in stage.verify(layout):
            if report.quarantine_share > max_quarantine_share:
                report.problem(
                    f"{report.quarantined} of {report.samples + report.quarantined} samples quarantined "
                    f"({report.quarantine_share:.0%}), over --max-quarantine-share {max_quarantine_share:g}; "
                    f"see {layout.quarantine_table(stage.name)}"
                )
            reports.append(report)
    for stage, why in lineage.stale_stages(layout).items():
        report = SplitReport("all", stage=stage)
        report.problem(f"stale: {why}; {lineage.refresh_command(layout, stage)}")
        reports.append(report)
    return reports


def format_reports(reports: list[SplitReport]) -> str:
    width = max([len("stage")] + [len(r.stage) for r in reports])
    lines = [
        f"{'stage':<{width}} {'split':<8} {'shards':>6} {'samples':>8} {'bytes':>12} "
        f"{'quarantined':>14}  result"
    ]
    for r in reports:
        held = f"{r.quarantined} ({r.quarantine_share:.0%})"
        result = "ok" if not r.problems else f"{len(r.problems)} problem(s)"
        lines.append(
            f"{r.stage:<{width}} {r.split:<8} {r.shards:>6} {r.samples:>8} {r.bytes:>12} "
            f"{held:>14}  {result}"
        )
    for r in reports:
        lines += [f"  {r.stage} {r.split}: {p}" for p in r.problems]
    return "\n".join(lines)
