"""``prep export`` and ``prep exports``: the command-line side of :mod:`pipeline.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import PrepError, handled_errors


def export_command(
    format_name: str = typer.Option(
        ..., "--format", help="Trainer format (a registered exporter; `prep exports` lists them)."
    ),
    out: Path = typer.Option(..., help="The prepared run (a finished --out)."),
    to: Path = typer.Option(..., help="Folder to write the trainer's files into."),
    fields: Optional[str] = typer.Option(
        None,
        help="Comma list of shard fields to export, e.g. dinov2,hands (default: the format's).",
    ),
    splits: Optional[str] = typer.Option(None, help="Comma list of splits (default: all)."),
    overwrite: bool = typer.Option(False, help="Write over a non-empty --to."),
    allow_stale: bool = typer.Option(
        False,
        help="Export outputs made before an upstream stage was rerun (recorded in EXPORT.md).",
    ),
) -> None:
    """Write the files a trainer's own code reads (its labels, features, config keys) from a
    prepared run, streaming, resumable split by split; EXPORT.md says how to train on them."""
    from pipeline.export import run_export
    from pipeline.exporter import ExportSettings

    def listed(text: Optional[str]) -> Optional[tuple[str, ...]]:
        return tuple(p.strip() for p in text.split(",") if p.strip()) if text else None

    with handled_errors():
        settings = ExportSettings(fields=listed(fields), splits=listed(splits))
        readme = run_export(
            format_name,
            out.expanduser().resolve(),
            to.expanduser().resolve(),
            settings,
            overwrite,
            allow_stale=allow_stale,
        )
    typer.echo(str(readme))


def list_exports() -> None:
    """The export formats installed here, with the trainer each one feeds."""
    from pipeline.export import exporter_class, format_names

    broken = 0
    for name in format_names():
        try:
            exporter = exporter_class(name)
        except PrepError as exc:  # one broken plug-in does not hide the others
            broken += 1
            typer.echo(f"{name:<12} unavailable: {exc}")
            continue
        typer.echo(f"{name:<12} {exporter.trainer:<28} {exporter.summary}")
    if broken:
        raise typer.Exit(1)
