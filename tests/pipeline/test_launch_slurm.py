"""``prep launch slurm`` on a real one-node Slurm (:mod:`tests.pipeline.slurm_cluster`): arrays
chained by afterok give one process's bytes; a requeued task resumes, a cancelled one resubmitted
alone resumes, a failing one stops the arrays after it; ``prep status`` shows each rank."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pipeline import registry, synthetic
from pipeline.layout import DONE_MARKER, Layout
from pipeline.shards import iter_tar_samples, sample_key
from tests.conftest import manifest_rows, phoenix_samples, prep
from tests.pipeline.prep_process import prep_env, run_prep
from tests.pipeline.slurm_cluster import SlurmCluster, running_cluster
from tests.pipeline.test_determinism import write_keypoints

SPLITS = ("train", "dev", "test")
TASK_SETTINGS = ("--gpus-per-task", 0, "--cpus-per-task", 1, "--signal-seconds", 30)


@pytest.fixture(scope="module")
def slurm() -> SlurmCluster:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(root, hand keypoints): 6 Phoenix14T-style clips of 8 frames, and keypoints for each."""
    folder = tmp_path_factory.mktemp("slurm-corpus")
    root = synthetic.write_phoenix14t(folder / "corpus", phoenix_samples(6, 8), size=(42, 52))
    write_keypoints(root, folder / "keypoints")
    return root, folder / "keypoints"


def run_args(corpus: tuple[Path, Path], model: Path, out: Path, stage: str) -> tuple:
    """``prep run`` options of every stage: tiny DINOv2, kinematic captions from keypoints."""
    root, keypoints = corpus
    return (
        "--stage",
        stage,
        "--dataset",
        "phoenix14t",
        "--root",
        root,
        "--out",
        out,
        "--dinov2",
        model,
        "--hand-keypoints",
        keypoints,
        "--captioner",
        "kinematic",
        "--text-encoder",
        "none",
        "--chunk-frames",
        4,
        "--unit-size",
        1,
        "--shard-clips",
        2,
    )


@pytest.fixture(scope="module")
def one_process(small_corpus, tiny_dinov2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one-process") / "out"
    result = prep("run", "--quiet", *run_args(small_corpus, tiny_dinov2, out, "all"))
    assert result.exit_code == 0, result.output
    return out


def launch(cluster: SlurmCluster, *args: object) -> dict[str, str]:
    """``prep launch slurm`` with this cluster's settings; ``{stage: job id}`` as it printed."""
    result = run_prep(
        "launch",
        "slurm",
        *TASK_SETTINGS,
        *args,
        env=prep_env(SLURM_CONF=cluster.env["SLURM_CONF"]),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    jobs = dict(line.split() for line in lines[:-1])
    assert lines[-1] == list(jobs.values())[-1]  # the last line: the final job's id
    return jobs


def same_outputs(one: Path, many: Path) -> None:
    """Every stage's tables and files byte for byte; shards too, but for their names."""
    for stage in registry.names():
        files = sorted(p.name for p in (one / stage).iterdir() if p.name != "summary.json")
        assert files, stage
        for name in files:
            assert (one / stage / name).read_bytes() == (many / stage / name).read_bytes(), name
    for split in SPLITS:
        indexes = [
            json.loads((out / "shards" / split / "index.json").read_text()) for out in (one, many)
        ]
        names = [[s.pop("url") for s in index["shardlist"]] for index in indexes]
        assert indexes[0] == indexes[1]
        for first, second in zip(*names):
            assert (one / "shards" / split / first).read_bytes() == (
                many / "shards" / split / second
            ).read_bytes()


def test_dry_run_prints_each_stage_script_and_asks_gpus_only_for_model_stages(
    small_corpus, tiny_dinov2, tmp_path
):
    out = tmp_path / "out"
    args = ("launch", "slurm", "--array", 3, "--gpus-per-task", 2, "--partition", "gpu")
    result = prep(*args, "--dry-run", "--", *run_args(small_corpus, tiny_dinov2, out, "all"))
    assert result.exit_code == 0, result.output
    scripts = result.stdout.split("#!/bin/bash")[1:]
    assert len(scripts) == len(registry.names())
    for name, script in zip(registry.names(), scripts):
        asks_gpus = "#SBATCH --gpus-per-task=2" in script
        assert asks_gpus == registry.get(name).uses_gpu, name
        assert f'--stage {name} --rank "$SLURM_ARRAY_TASK_ID" --world-size 3' in script
        assert "#SBATCH --partition=gpu" in script and "#SBATCH --requeue" in script
    assert "--dependency=afterok:<manifest job>" in result.stdout
    assert not out.exists()  # a dry run writes nothing
    refused = prep(*args, "--", "--rank", 1, *run_args(small_corpus, tiny_dinov2, out, "all"))
    assert refused.exit_code == 1 and "--rank is set per task" in refused.stderr


def test_arrays_chained_by_afterok_give_the_bytes_of_one_process(
    slurm, small_corpus, tiny_dinov2, one_process, tmp_path
):
    out = tmp_path / "out"
    jobs = launch(slurm, "--array", 3, "--", *run_args(small_corpus, tiny_dinov2, out, "all"))
    assert list(jobs) == registry.names()
    names = registry.names()
    for after in names[1:]:
        ((state, reason),) = {v for v in slurm.job_states(jobs[after]).values()} or {("", "")}
        if state == "PENDING":  # until the stage before has completed; for a moment after
            # submitting, or once the dependency is met, slurmctld shows no reason or queueing
            assert reason in ("Dependency", "None", "Priority", "Resources"), (after, reason)
        script = Layout(out).launch_script(after).read_text()
        assert "--gpus-per-task" not in script  # --gpus-per-task 0: a CPU cluster
    for stage in names:
        states = slurm.wait_finished(jobs[stage], timeout=240)
        assert {s for s, _ in states.values()} == {"COMPLETED"}, (stage, states)
        assert len(states) == 3
    same_outputs(one_process, out)
    assert prep("verify", "--out", out).exit_code == 0


def committed_by_rank(out: Path, stage: str) -> dict[int, dict[str, int]]:
    """``{rank: {unit id: marker mtime}}`` of the committed units of ``stage``."""
    found: dict[int, dict[str, int]] = {}
    for marker in Layout(out).units_dir(stage).glob(f"*/[0-9]*/{DONE_MARKER}"):
        rank = json.loads((marker.parent / "stats.json").read_text())["rank"]
        found.setdefault(rank, {})[json.loads(marker.read_text())["unit"]] = (
            marker.stat().st_mtime_ns
        )
    return found


@pytest.fixture(scope="module")
def longer_corpus(tmp_path_factory) -> tuple[Path, Path]:
    """24 clips of 16 frames, one unit each: 8 units per rank of 3, time enough to catch one midway."""
    folder = tmp_path_factory.mktemp("slurm-longer")
    root = synthetic.write_phoenix14t(folder / "corpus", phoenix_samples(24, 16), size=(42, 52))
    write_keypoints(root, folder / "keypoints")
    return root, folder / "keypoints"


def features_args(corpus: tuple[Path, Path], model: Path, out: Path) -> tuple:
    return (*run_args(corpus, model, out, "features")[:-4], "--unit-size", 1, "--shard-clips", 1)


def test_a_requeued_task_resumes_and_a_cancelled_one_resubmitted_alone_finishes(
    slurm, longer_corpus, tiny_dinov2, tmp_path
):
    out = tmp_path / "out"
    manifest = run_args(longer_corpus, tiny_dinov2, out, "manifest")
    assert prep("run", "--quiet", *manifest[:-4], "--unit-size", 1).exit_code == 0
    args = features_args(longer_corpus, tiny_dinov2, out)
    job = launch(slurm, "--array", 3, "--", *args)["features"]
    suspended: dict[int, dict[str, int]] = {}

    def caught_midway() -> bool:  # each of ranks 1 and 2 frozen once it committed a unit
        for rank in committed_by_rank(out, "features"):
            if rank in (1, 2) and rank not in suspended:
                slurm.command("scontrol", "suspend", f"{job}_{rank}")
                suspended[rank] = committed_by_rank(out, "features").get(rank, {})
        return len(suspended) == 2

    slurm.wait(caught_midway, 180, "ranks 1 and 2 committed a unit", step=0.1)
    assert all(1 <= len(units) < 8 for units in suspended.values()), suspended
    for rank in (1, 2):  # running again, with units left to do when the signal comes
        slurm.command("scontrol", "resume", f"{job}_{rank}")
        if rank == 1:
            slurm.requeue(f"{job}_1")  # preempted: SIGTERM, then back in the queue
        else:
            slurm.command("scancel", f"{job}_2")  # killed
    states = slurm.wait_finished(job, timeout=240)
    assert states[f"{job}_0"][0] == states[f"{job}_1"][0] == "COMPLETED", states
    assert states[f"{job}_2"][0] == "CANCELLED", states
    (log_1,) = Layout(out).launch_logs("features", 1)
    text = log_1.read_text()
    assert (
        "prep: stopped by SIGTERM" in text
        and "was preempted or requeued (restart 1): resuming" in text
    )
    # the restart skips every unit committed before the suspension (and any the task
    # committed between `scontrol resume` and the requeue's SIGTERM reaching it)
    to_do = [int(n) for n in re.findall(r"24 units \(8 for rank 1/3\), (\d+) to do", text)]
    assert len(to_do) >= 2 and to_do[0] == 8 and to_do[-1] <= 8 - len(suspended[1]), text

    status = run_prep("status", "--out", out)
    assert status.returncode == 0, status.stderr
    assert "features       partial: " in status.stdout
    (cancelled,) = re.findall(r"rank 2: (\d+)/8 units", status.stdout)  # the cancelled share
    assert len(suspended[2]) <= int(cancelled) < 8, status.stdout
    assert "rank 0: 8/8 units" in status.stdout and "rank 1: 8/8 units" in status.stdout

    again = launch(slurm, "--array", 3, "--only-rank", 2, "--", *args)["features"]
    assert slurm.wait_finished(again, timeout=180) == {f"{again}_2": ("COMPLETED", "None")}
    after = committed_by_rank(out, "features")
    for rank, units in suspended.items():  # units committed before the stop were not redone
        assert all(after[rank][unit] == mtime for unit, mtime in units.items())
    assert sum(len(units) for units in after.values()) == 24
    keys = Counter(
        key
        for split in SPLITS
        for tar in (out / "shards" / split).glob("*.tar")
        for key, _ in iter_tar_samples(tar)
    )
    expected = {sample_key(r["id"]) for s in SPLITS for r in manifest_rows(out, s)}
    assert set(keys) == expected and set(keys.values()) == {1}
    assert prep("verify", "--out", out).exit_code == 0
    assert "features       done" in run_prep("status", "--out", out).stdout


def test_a_failing_task_stops_the_arrays_after_it_and_status_names_it(
    slurm, small_corpus, tiny_dinov2, tmp_path
):
    out, model = tmp_path / "out", Path(shutil.copytree(tiny_dinov2, tmp_path / "model"))
    args = run_args(small_corpus, model, out, "features")
    manifest = run_args(small_corpus, model, out, "manifest")
    assert prep("run", "--quiet", *manifest).exit_code == 0
    for rank in (0, 2):  # ranks 0 and 2 are done; rank 1 loads the model, which is broken now
        assert prep("run", "--quiet", *args, "--rank", rank, "--world-size", 3).exit_code == 0
    (model / "config.json").write_text("not a model configuration")
    first = launch(slurm, "--array", 3, "--", *args)["features"]
    later = launch(slurm, "--array", 3, "--after", first, "--", *args)["features"]
    states = slurm.wait_finished(first, timeout=180)
    assert [states[f"{first}_{r}"][0] for r in range(3)] == ["COMPLETED", "FAILED", "COMPLETED"]
    slurm.wait(
        lambda: {r for _, r in slurm.job_states(later).values()} == {"DependencyNeverSatisfied"},
        60,
        "the later array marked DependencyNeverSatisfied",
    )
    slurm.command("scancel", later)
    (log,) = Layout(out).launch_logs("features", 1)
    errors = [line for line in log.read_text().splitlines() if line.startswith("prep: error:")]
    assert len(errors) == 1 and "cannot load DINOv2" in errors[0], log.read_text()
    assert "Traceback" not in log.read_text()
    status = run_prep("status", "--out", out).stdout
    assert f"rank 1: 0/1 units; failed: {errors[0]} (log {log})" in status  # 4 units: 2, 1, 1
    assert "rank 0: 2/2 units" in status and "rank 2: 1/1 units" in status
