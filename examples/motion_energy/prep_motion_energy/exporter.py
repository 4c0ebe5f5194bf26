"""``prep export --format motion-csv``: one CSV per split of each sample's motion, for a lab's own
analysis or training code (``pandas.read_csv``).

``<to>/<split>.csv`` has a header and one row per shard sample, in shard order: ``id``,
``motion_mean`` (the json's value) and ``frames`` (the length of ``motion.npy``, one value per
selected frame). A sample the motion-energy stage quarantined is still in the shards, with no
``motion.npy`` and ``motion_mean`` null: its two cells are empty, so a reader sees NaN, never a
made-up zero. Everything comes from the shards, the same values a trainer's loader reads.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import PrepError
from pipeline.exporter import Exporter, ShardSample
from pipeline.storage import atomic_file

STAGE = "motion-energy"
FIELD = "motion"  # the shard field motion.npy, named without its suffix
HEADER = ("id", "motion_mean", "frames")


class MotionCsvExporter(Exporter):
    name = "motion-csv"
    version = 1
    trainer = "any CSV reader"
    summary = "<split>.csv: id, motion_mean, frames of every shard sample (prep-motion-energy)"
    default_fields = (FIELD,)

    def check(self) -> None:
        """Every split's shards must have been packed after motion-energy ran: shards packed
        before it hold neither the field nor the json column, and a CSV of blanks would look
        like a corpus of quarantined clips."""
        for split in self.splits:
            index = self.source.shard_index(split)
            if index is None:
                raise PrepError(
                    f"motion-csv: split {split} has no shards; run --stage features first"
                )
            packed = index.get("provenance", {}).get("stages", {})
            if STAGE not in packed and f"{FIELD}.npy" not in self.source.shard_fields(split):
                raise PrepError(
                    f"motion-csv: the {split} shards hold no {FIELD} field (packed without "
                    f"{STAGE}); run --stage {STAGE}, then --stage features --overwrite"
                )

    def export_split(self, split: str) -> list[Path]:
        path = self.inside_target(self.target / f"{split}.csv")
        with atomic_file(path) as handle:
            for line in _lines(self.source.samples(split, (FIELD,))):
                handle.write(line.encode("utf-8"))
        return [path]

    def instructions(self) -> str:
        return (
            'Read each split with `pandas.read_csv("<split>.csv")`: one row per sample of the '
            "shards, in shard order, with `motion_mean` (mean absolute grey-level change between "
            "selected frames) and `frames` (selected frames measured). Both are empty for a "
            "sample the motion-energy stage quarantined; the shards' json says why (`missing`)."
        )


def _lines(samples: Iterator[ShardSample]) -> Iterator[str]:
    """The header, then one CSV line per sample (``repr`` of floats: exact and deterministic)."""
    yield _csv_line(HEADER)
    for sample in samples:
        mean = sample.meta.get("motion_mean")
        motion = sample.fields.get(FIELD)
        yield _csv_line(
            (
                sample.meta["id"],
                "" if mean is None else repr(float(mean)),
                "" if motion is None else str(len(motion)),
            )
        )


def _csv_line(cells: tuple[str, ...]) -> str:
    """One row quoted as the csv module quotes it (ids may hold commas), ``\\n``-terminated."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()
