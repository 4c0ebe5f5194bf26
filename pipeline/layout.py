"""The only place that turns (stage, split, unit) into paths under ``--out``.

::

    <out>/<stage>/<split>.parquet        merged per-split table of a stage
    <out>/<stage>/<split>.<name>.parquet a stage's side table (e.g. caption chunks)
    <out>/<stage>/quarantine.parquet     rejected samples with their reason
    <out>/<stage>/summary.json           counts per split and reason, options, versions
    <out>/<stage>/<file>                 a stage-wide output (pseudo-gloss: vocab.json)
    <out>/_units/<stage>/<split>/<NNNNN>/  one committed work unit (+ _done.json, stats.json)
    <out>/_units/<stage>/_plan.json      units and samples per split of the latest plan
    <out>/_units/<stage>/_errors/        the last error of each unit that failed (removed on success)
    <out>/_units/<stage>/_journal/       finished pieces of units in progress (removed on commit)
    <out>/_units/<stage>/_merge.lock     held by the one process merging the stage's units
    <out>/runs/<stage>-<confighash>.json  the resolved configuration of a run
    <out>/shards/<split>/                 published WebDataset tars + index.json
    <out>/_cache/<name>/                  caches libraries keep between runs (jieba)
    <out>/pose/<split>/<id>.pose          a clip's landmarks in pose-format (``--pose-files``)
    <out>/report/index.html               the static report page (``prep report``)
    <out>/plan.json                       time estimates per stage (``prep plan``)
    <out>/launch/<stage>.sbatch           the batch script ``prep launch slurm`` submitted
    <out>/launch/logs/<stage>-<job>_<task>.log  one Slurm array task's log
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

DONE_MARKER = "_done.json"
UNIT_STATS = "stats.json"
UNIT_QUARANTINE = "quarantine.parquet"  # every stage's quarantine rows of one unit
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"  # a published folder being replaced


@dataclass(frozen=True)
class Layout:
    out: Path

    def stage_dir(self, stage: str) -> Path:
        return self.out / stage

    def split_table(self, stage: str, split: str) -> Path:
        return self.stage_dir(stage) / f"{split}.parquet"

    def side_table(self, stage: str, split: str, name: str) -> Path:
        """A second per-split table of a stage, e.g. ``hand-captions/train.chunks.parquet``."""
        return self.stage_dir(stage) / f"{split}.{name}.parquet"

    def quarantine_table(self, stage: str) -> Path:
        return self.stage_dir(stage) / "quarantine.parquet"

    def summary(self, stage: str) -> Path:
        return self.stage_dir(stage) / "summary.json"

    def units_dir(self, stage: str) -> Path:
        return self.units_root() / stage

    def unit_dir(self, stage: str, unit_id: str) -> Path:
        return self.units_dir(stage) / unit_id

    def plan_record(self, stage: str) -> Path:
        return self.units_dir(stage) / "_plan.json"

    def merge_lock(self, stage: str) -> Path:
        return self.units_dir(stage) / "_merge.lock"

    def run_lock(self, stage: str, rank: int) -> Path:
        return self.units_dir(stage) / f"_run-rank{rank}.lock"

    def unit_error(self, stage: str, unit_id: str) -> Path:
        return self.units_dir(stage) / "_errors" / f"{unit_id.replace('/', '-')}.json"

    def unit_journal(self, stage: str, unit_id: str) -> Path:
        return self.units_dir(stage) / "_journal" / f"{unit_id.replace('/', '-')}.jsonl"

    def unit_marker(self, stage: str, unit_id: str) -> Path:
        return self.unit_dir(stage, unit_id) / DONE_MARKER

    def stage_file(self, stage: str, name: str) -> Path:
        """A stage-wide output beside its tables (e.g. ``pseudo-gloss/vocab.json``)."""
        return self.stage_dir(stage) / name

    def units_root(self) -> Path:
        return self.out / "_units"

    def cache_dir(self, name: str) -> Path:
        """Caches a library keeps between runs (e.g. jieba's prefix dictionary)."""
        return self.out / "_cache" / name

    def pose_file(self, split: str, sample_id: str) -> Path:
        """One clip's landmarks as a pose-format file (features ``--pose-files``)."""
        return self.out / "pose" / split / f"{sample_id}.pose"

    def shards_root(self) -> Path:
        return self.out / "shards"

    def shard_dir(self, split: str) -> Path:
        return self.shards_root() / split

    def run_record(self, stage: str, config_hash: str) -> Path:
        return self.out / "runs" / f"{stage}-{config_hash}.json"

    def runs_dir(self) -> Path:
        return self.out / "runs"

    def report_page(self) -> Path:
        return self.out / "report" / "index.html"

    def plan_estimate(self) -> Path:
        return self.out / "plan.json"

    def launch_dir(self) -> Path:
        return self.out / "launch"

    def launch_script(self, stage: str) -> Path:
        return self.launch_dir() / f"{stage}.sbatch"

    def launch_log_pattern(self, stage: str) -> Path:
        """Slurm's ``--output`` pattern: ``%A`` the array job id, ``%a`` the task (the rank)."""
        return self.launch_dir() / "logs" / f"{stage}-%A_%a.log"

    def launch_logs(self, stage: str, rank: int) -> list[Path]:
        """The logs of every task that ran ``rank`` of ``stage``, oldest job first."""
        found = (self.launch_dir() / "logs").glob(f"{stage}-*_{rank}.log")
        return sorted(found, key=lambda p: int(p.stem.rsplit("-", 1)[1].split("_")[0]))


def temporary_sibling(path: Path) -> Path:
    """A hidden name next to ``path`` that no reader ever takes for a finished output; host and
    pid in it keep ranks on different nodes of a shared file system apart."""
    return path.with_name(f"{TMP_PREFIX}{path.name}-{socket.gethostname()}-{os.getpid()}")
