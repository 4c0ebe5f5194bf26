"""A stage is a plug-in: a package that registers a stage under the ``prep.stages`` entry point
is run, planned, checked, verified and reported by every command, and its exported column
rides along in the shards, with no framework file edited.

The toy stage below lives only in this test: it is written into a folder with a
``dist-info`` that declares the entry point, and that folder is put on ``PYTHONPATH`` of the
``prep`` processes, exactly as ``pip install`` of a lab's package would do.
"""

from __future__ import annotations

import inspect
import json
import os
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import synthetic
from tests.pipeline.prep_process import prep_env, run_prep

TOY_STAGE = '''
"""A lab's own stage: each clip's duration, quarantining clips shorter than a threshold."""

from dataclasses import dataclass

import pyarrow as pa

from pipeline import manifest as m
from pipeline.doctor import Check
from pipeline.stage import Export, Planned, option, slice_units
from pipeline.table_stage import TableStage, UnitTables, quarantine_row


@dataclass(frozen=True)
class DurationOptions:
    min_seconds: float = option(0.0, "Quarantine clips shorter than this many seconds.")


class DurationStage(TableStage):
    name = "clip-duration"
    version = 1
    options_class = DurationOptions
    requires = ("manifest",)
    schema = pa.schema([("id", pa.string()), ("split", pa.string()), ("duration_s", pa.float64())])
    exports = Export(("duration_s",))
    cost_unit = "clip"

    def plan(self):
        units = []
        for split in m.manifest_splits(self.layout):
            table = m.read_table(m.manifest_table(self.layout, split))
            rows = table.select(["id", "num_frames", "fps"]).to_pylist()
            units += slice_units(split, rows, 4)
        return Planned(units)

    def process(self, unit, context):
        rows, rejected = [], []
        for item in unit.items:
            seconds = item["num_frames"] / item["fps"]
            if seconds < self.options.min_seconds:
                rejected.append(quarantine_row(self, unit, item, "too_short", f"{seconds:.2f} s"))
            else:
                rows.append({"id": item["id"], "split": unit.split, "duration_s": seconds})
        return UnitTables(rows, rejected)

    @classmethod
    def doctor_checks(cls, options, needed):
        value = options["min_seconds"]
        fix = "pass --min-seconds 0 or more"
        return [Check("clip-duration", "threshold", value >= 0, f"{value} s", needed, fix)]
'''

ENTRY_POINTS = "[prep.stages]\nclip-duration = toy_duration_stage:DurationStage\n"
COMMANDS = ("run", "status", "verify", "report", "doctor", "plan")
MIN_SECONDS = 0.6


def install_plugin(folder: Path, entry_points: str = ENTRY_POINTS) -> dict[str, str]:
    """The toy stage as an installed distribution on ``folder``; the environment that sees it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy_duration_stage.py").write_text(TOY_STAGE)
    info = folder / "toy_duration_stage-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-duration-stage\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(entry_points)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return prep_env(PYTHONPATH=path)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    return install_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    samples = synthetic.default_samples("de", clips=10, frames=(8, 30))
    return synthetic.write_phoenix14t(tmp_path_factory.mktemp("toy"), samples, size=(42, 52))


def test_every_command_offers_the_plugin_stage(plugin_env):
    for command in COMMANDS:
        result = run_prep(command, "--help", env=plugin_env)
        assert result.returncode == 0, result.stderr
    run_help = run_prep("run", "--help", env=plugin_env).stdout
    assert "Stage clip-duration" in run_help and "--min-seconds" in run_help
    assert "clip-duration" in run_help.split("--stage")[1].split("--dataset")[0]
    for command in ("doctor", "plan"):
        assert "--min-seconds" in run_prep(command, "--help", env=plugin_env).stdout


def test_the_plugin_stage_runs_and_every_command_handles_it(
    plugin_env, corpus, tmp_path, tiny_dinov2
):
    out = tmp_path / "out"
    flags = ["--dataset", "phoenix14t", "--root", corpus, "--out", out, "--quiet"]
    # two worker processes: the plug-in class and its units reach spawned workers too
    limits = ["--min-seconds", MIN_SECONDS, "--max-quarantine-share", 1, "--workers", 2]
    result = run_prep("run", "--stage", "clip-duration", *flags, *limits, env=plugin_env)
    assert result.returncode == 0, result.stderr
    assert "clip-duration (v1)" in result.stdout  # the manifest ran first: it is required

    manifest = {r["id"]: r for r in pq.read_table(out / "manifest" / "train.parquet").to_pylist()}
    kept = {r["id"]: r for r in pq.read_table(out / "clip-duration" / "train.parquet").to_pylist()}
    rejected = pq.read_table(out / "clip-duration" / "quarantine.parquet").to_pylist()
    for sample_id, row in manifest.items():
        seconds = row["num_frames"] / row["fps"]
        if seconds < MIN_SECONDS:
            assert sample_id not in kept
        else:
            assert kept[sample_id]["duration_s"] == pytest.approx(seconds)
    assert rejected and {r["reason"] for r in rejected} == {"too_short"}
    assert {r["stage"] for r in rejected} == {"clip-duration"}

    status = run_prep("status", "--out", out, env=plugin_env)
    assert status.returncode == 0 and "clip-duration" in status.stdout

    features = run_prep(
        "run", "--stage", "features", *flags, "--dinov2", tiny_dinov2, env=plugin_env
    )
    assert features.returncode == 0, features.stderr
    for sample in shard_jsons(out / "shards" / "train"):
        expected = kept.get(sample["id"])
        assert sample["duration_s"] == (expected and pytest.approx(expected["duration_s"]))
        assert sample["provenance"]["stages"]["clip-duration"] == 1

    verify = run_prep("verify", "--out", out, "--max-quarantine-share", 1, env=plugin_env)
    assert verify.returncode == 0, verify.stdout
    assert [line.split()[1] for line in verify.stdout.splitlines() if line.startswith("clip-")] == [
        "train",
        "dev",
        "test",
    ]

    report = run_prep("report", "--out", out, env=plugin_env)
    assert report.returncode == 0, report.stderr
    page = (out / "report" / "index.html").read_text()
    assert 'id="clip-duration"' in page and "too_short" in page

    plan = run_prep(
        "plan", "--out", out, "--stage", "clip-duration", "--pilot-clips", 2, env=plugin_env
    )
    assert plan.returncode == 0, plan.stderr
    [row] = [line for line in plan.stdout.splitlines() if line.startswith("clip-duration")]
    assert "s/clip" in row


def test_doctor_runs_the_plugin_stages_checks(plugin_env):
    fine = run_prep("doctor", "--stage", "clip-duration", "--min-seconds", 1, env=plugin_env)
    assert "clip-duration  threshold" in fine.stdout and "1.0 s" in fine.stdout
    broken = run_prep("doctor", "--stage", "clip-duration", "--min-seconds", -1, env=plugin_env)
    assert broken.returncode == 1
    assert "prep: missing: clip-duration threshold: pass --min-seconds 0 or more" in broken.stderr


def test_a_plugin_that_disagrees_on_a_shared_option_is_named(tmp_path):
    env = install_plugin(tmp_path / "plugin")
    stage = tmp_path / "plugin" / "toy_duration_stage.py"
    stage.write_text(
        stage.read_text().replace(
            'min_seconds: float = option(0.0, "Quarantine',
            'unit_size: int = option(7, "Other default.")\n    min_seconds: float = option(0.0, "Quarantine',
        )
    )
    result = run_prep("run", "--help", env=env)
    assert result.returncode == 1
    assert "option unit_size is declared by" in result.stderr and "clip-duration" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_packages_registering_one_stage_name_is_an_error(tmp_path):
    entry = ENTRY_POINTS + "other = toy_duration_stage:OtherManifest\n"
    env = install_plugin(tmp_path / "plugin", entry)
    stage = tmp_path / "plugin" / "toy_duration_stage.py"
    stage.write_text(
        stage.read_text() + "\n\nclass OtherManifest(DurationStage):\n    name = 'manifest'\n"
    )
    result = run_prep("status", "--help", env=env)
    assert result.returncode == 1
    assert "two packages register stage 'manifest'" in result.stderr
    assert "toy_duration_stage:OtherManifest" in result.stderr


def test_a_plugin_that_fails_to_import_costs_one_line(tmp_path, corpus):
    env = install_plugin(tmp_path / "plugin")
    stage = tmp_path / "plugin" / "toy_duration_stage.py"
    stage.write_text("import a_module_this_lab_forgot_to_list\n" + stage.read_text())
    warning = (
        "prep: warning: plug-in stage clip-duration is left out: distribution toy-duration-stage: "
        "stage entry point clip-duration = toy_duration_stage:DurationStage fails to import: "
        "ModuleNotFoundError: No module named 'a_module_this_lab_forgot_to_list'"
    )
    assert run_prep("status", "--help", env=env).returncode == 0
    out = tmp_path / "out"
    flags = ["--dataset", "phoenix14t", "--root", corpus, "--out", out, "--quiet"]
    manifest = run_prep("run", "--stage", "manifest", *flags, env=env)
    assert manifest.returncode == 0, manifest.stderr
    assert warning in manifest.stderr and "Traceback" not in manifest.stderr
    status = run_prep("status", "--out", out, env=env)
    assert status.returncode == 0 and "manifest" in status.stdout
    for stage in ("clip-duration", "all"):
        needed = run_prep("run", "--stage", stage, *flags, env=env)
        assert needed.returncode == 1 and "Traceback" not in needed.stderr
        last = needed.stderr.strip().splitlines()[-1]
        assert last.startswith("prep: error: ") and "clip-duration is unusable" in last, last


def shard_jsons(folder: Path) -> list[dict]:
    samples = []
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    samples.append(json.loads(tar.extractfile(member).read()))
    return samples


def test_a_plugin_option_named_like_a_run_setting_is_refused(tmp_path):
    """Declaring ``workers`` once made every plain ``prep run`` use the plug-in's default."""
    env = install_plugin(tmp_path / "plugin")
    stage = tmp_path / "plugin" / "toy_duration_stage.py"
    stage.write_text(
        stage.read_text().replace(
            'min_seconds: float = option(0.0, "Quarantine',
            'workers: int = option(3, "Threads.")\n    min_seconds: float = option(0.0, "Quarantine',
        )
    )
    result = run_prep("run", "--help", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "option workers of stage clip-duration (toy_duration_stage) is a run setting" in (
        result.stderr
    )


def test_a_plugin_sharing_an_option_with_other_help_is_refused(tmp_path):
    env = install_plugin(tmp_path / "plugin")
    stage = tmp_path / "plugin" / "toy_duration_stage.py"
    stage.write_text(
        stage.read_text().replace(
            'min_seconds: float = option(0.0, "Quarantine',
            'unit_size: int = option(200, "Clips per unit.", min=1)\n'
            '    min_seconds: float = option(0.0, "Quarantine',
        )
    )
    result = run_prep("status", "--help", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "option unit_size is declared by manifest" in result.stderr
    assert "and by clip-duration (int, default 200, help 'Clips per unit.'" in result.stderr


def test_every_run_setting_is_reserved():
    from pipeline import cli, registry
    from pipeline.config import RUN_SETTINGS

    own = set(inspect.signature(cli.run).parameters) - set(registry.options())
    assert own == RUN_SETTINGS


def test_a_circle_through_the_collected_exports_names_that_edge(tmp_path):
    """An exporting stage that requires features closes a loop through the edge features adds
    itself (it collects every export): the plug-in is left out in one line naming each edge and
    where it comes from, and prep's own stages keep working."""
    env = install_plugin(tmp_path / "plugin")
    stage = tmp_path / "plugin" / "toy_duration_stage.py"
    stage.write_text(
        stage.read_text().replace('requires = ("manifest",)', 'requires = ("features",)')
    )
    circle = (
        "prep: warning: plug-in stage clip-duration is left out: distribution toy-duration-stage: "
        "stages depend on each other in a circle: clip-duration requires features; "
        "features collects the exports of clip-duration"
    )
    result = run_prep("status", "--help", env=env)
    assert result.returncode == 0 and circle in result.stderr.splitlines()
    flags = ["--dataset", "phoenix14t", "--root", tmp_path, "--out", tmp_path / "o"]
    needed = run_prep("run", "--stage", "clip-duration", *flags, env=env)
    assert needed.returncode == 1 and "Traceback" not in needed.stderr
    assert (
        needed.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "prep: error: stage clip-duration is unusable: distribution toy-duration-stage: stages"
        )
    )
