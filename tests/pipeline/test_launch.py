"""Many processes: ranks launched together (accelerate, torchrun: a gloo process group on CPU)
and ranks started apart (Slurm arrays, ``--rank``: the last merges under a lock); the merge
lock after a kill; the exactly-once check of published shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import manifest as m
from pipeline import registry
from pipeline.config import launched_together
from pipeline.devices import rank_gpu
from pipeline.distributed import held_lock
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.shards import iter_tar_samples, sample_key
from stages.features.publish import publish_split
from tests.conftest import REPO, manifest_rows, prep
from tests.pipeline.prep_process import (
    file_digests,
    free_port,
    prep_env,
    run_command,
)

SPLITS = ("train", "dev", "test")


def header(stage: str) -> str:
    """The line a finished stage prints, e.g. ``features (v3)``."""
    return f"{stage} (v{registry.get(stage).version})"


def features_args(root: Path, model: Path, out: Path) -> tuple:
    return (
        "run",
        "--stage",
        "features",
        "--dataset",
        "phoenix14t",
        "--root",
        root,
        "--out",
        out,
        "--dinov2",
        model,
        "--shard-clips",
        4,
        "--unit-size",
        8,
        "--quiet",
    )


def manifest_args(root: Path, out: Path, *extra: object, unit_size: int = 4) -> tuple:
    return (
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "phoenix14t",
        "--root",
        root,
        "--out",
        out,
        "--unit-size",
        unit_size,
        "--quiet",
        *extra,
    )


def unit_ranks(out: Path, stage: str) -> list[int]:
    """The rank that made each unit, in plan order (splits in manifest order, then unit number)."""
    layout = Layout(out)
    ranks = []
    for split in m.manifest_splits(layout):
        for folder in sorted((layout.units_dir(stage) / split).glob("[0-9]*")):
            ranks.append(json.loads((folder / "stats.json").read_text())["rank"])
    return ranks


def shard_keys(out: Path, split: str) -> Counter:
    index = json.loads((out / "shards" / split / "index.json").read_text())
    return Counter(
        key
        for s in index["shardlist"]
        for key, _ in iter_tar_samples(out / "shards" / split / s["url"])
    )


def test_accelerate_launch_shares_units_and_matches_one_process(
    phoenix_template, tiny_dinov2, tmp_path
):
    one, many = tmp_path / "one", tmp_path / "many"
    assert prep(*features_args(phoenix_template, tiny_dinov2, one)).exit_code == 0
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "pipeline.cli",
    ]
    env = prep_env(HF_HOME=str(tmp_path / "hf"))  # no accelerate config of this machine's user
    result = run_command(
        launch + [str(a) for a in features_args(phoenix_template, tiny_dinov2, many)], env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "rank 0/2 joined the process group (gloo)" in result.stderr
        and "rank 1/2 joined" in result.stderr
    )
    assert (
        result.stdout.count(header("features")) == 1
    )  # rank 0 merged, rank 1 waited and printed nothing
    for stage in ("manifest", "features"):
        ranks = unit_ranks(many, stage)
        assert len(ranks) > 2 and ranks == [position % 2 for position in range(len(ranks))]
    for split in SPLITS:
        keys = shard_keys(many, split)
        assert set(keys.values()) == {1}
        assert set(keys) == {sample_key(r["id"]) for r in manifest_rows(many, split)}
    assert prep("verify", "--out", many).exit_code == 0
    assert_same_outputs(one, many)


def assert_same_outputs(one: Path, many: Path) -> None:
    """What "identical" means across world sizes: the same tables byte for byte, and the same tars
    byte for byte in the same index order; only shard names differ, as they carry the rank."""
    for stage in ("manifest", "features"):
        tables = sorted(p.name for p in (one / stage).glob("*.parquet"))
        assert tables and all(
            (one / stage / t).read_bytes() == (many / stage / t).read_bytes() for t in tables
        )
    for split in SPLITS:
        indexes = [
            json.loads((out / "shards" / split / "index.json").read_text()) for out in (one, many)
        ]
        names = [[s.pop("url") for s in index["shardlist"]] for index in indexes]
        assert indexes[0] == indexes[1]
        for name_one, name_many in zip(*names):
            assert (one / "shards" / split / name_one).read_bytes() == (
                many / "shards" / split / name_many
            ).read_bytes()
    assert {
        n.split("-")[1] for n in os.listdir(many / "shards" / "train") if n.endswith(".tar")
    } == {"0000", "0001"}


def test_a_failing_rank_stops_every_rank_of_a_torchrun_launch(phoenix_template, tmp_path):
    out = tmp_path / "out"
    (out / "_units" / "manifest").mkdir(parents=True)
    (out / "_units" / "manifest" / "dev").write_text(
        "a file where the dev units go: their units fail"
    )
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "pipeline.cli",
    ]
    args = manifest_args(phoenix_template, out, unit_size=8)  # dev: one unit, so one rank fails
    result = run_command(launch + [str(a) for a in args], timeout=180)
    assert result.returncode != 0
    assert "prep: error: stage manifest: 1 unit(s) failed, first dev/00000" in result.stderr
    assert (
        "prep: error: stage manifest: 1 other rank(s) failed" in result.stderr
    )  # the healthy rank did not hang
    assert not (out / "manifest" / "summary.json").exists()


def test_torchrun_ranks_run_every_stage_they_need_in_turn(phoenix_template, tmp_path):
    """Pseudo-gloss needs the manifest: both ranks run their manifest units, rank 0 merges, then both go on."""
    out = tmp_path / "out"
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "pipeline.cli",
    ]

    def args(folder: Path) -> list[str]:
        return [
            "run",
            "--stage",
            "pseudo-gloss",
            "--dataset",
            "phoenix14t",
            "--root",
            str(phoenix_template),
            "--out",
            str(folder),
            "--unit-size",
            "4",
            "--quiet",
        ]

    result = run_command(launch + args(out), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.stdout.count(header("manifest")) == 1
        and result.stdout.count(header("pseudo-gloss")) == 1
    )
    assert set(unit_ranks(out, "pseudo-gloss")) == {0, 1}
    reference = tmp_path / "reference"
    assert prep(*args(reference)).exit_code == 0
    for name in ("vocab.json", "prototypes.npy", *(f"{s}.parquet" for s in SPLITS)):
        assert (out / "pseudo-gloss" / name).read_bytes() == (
            reference / "pseudo-gloss" / name
        ).read_bytes()


def test_slurm_array_tasks_started_together_merge_once(phoenix_template, tmp_path):
    """Two tasks of ``scripts/slurm/prep_array.sbatch`` at once: shares split, the last merges, once."""
    out = tmp_path / "out"
    script = REPO / "scripts" / "slurm" / "prep_array.sbatch"
    settings = {
        "STAGE": "manifest",
        "DATASET": "phoenix14t",
        "ROOT": str(phoenix_template),
        "OUT": str(out),
        "PREP": f"{sys.executable} -m pipeline.cli",
        "SLURM_ARRAY_TASK_COUNT": "2",
        "SLURM_CPUS_PER_TASK": "1",
        "RANK": "0",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
    }  # launcher leftovers the script drops
    processes = [
        subprocess.Popen(
            ["bash", str(script), "--unit-size", "4"],
            cwd=REPO,
            text=True,
            env=prep_env(**settings, SLURM_ARRAY_TASK_ID=str(task)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for task in (0, 1)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sum(stdout.count(header("manifest")) for stdout, _ in outputs) == 1
    assert unit_ranks(out, "manifest") == [position % 2 for position in range(10)]
    assert not Layout(out).merge_lock("manifest").exists()
    ids = [r["id"] for s in SPLITS for r in manifest_rows(out, s)]
    assert len(ids) == len(set(ids)) == 40


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_merge_killed_midway_is_redone_on_the_next_run(phoenix_template, tmp_path):
    out = tmp_path / "out"
    assert prep(*manifest_args(phoenix_template, out)).exit_code == 0
    before = file_digests(out / "manifest")
    lock = Layout(out).merge_lock("manifest")  # as a SIGKILL inside finalize leaves things
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "since": 0}))
    (out / "manifest" / ".tmp-train.parquet-4242").write_bytes(b"half a parquet file")
    (out / "manifest" / "summary.json").unlink()
    result = prep(*manifest_args(phoenix_template, out))
    assert result.exit_code == 0, result.output
    assert not lock.exists() and file_digests(out / "manifest") == before


def test_a_merge_lock_held_elsewhere_is_never_ignored(phoenix_template, tmp_path):
    out = tmp_path / "out"
    assert prep(*manifest_args(phoenix_template, out)).exit_code == 0
    lock = Layout(out).merge_lock("manifest")
    lock.write_text(json.dumps({"host": "another-node", "pid": 4242, "since": 0}))
    (out / "manifest" / "summary.json").unlink()
    alone = prep(*manifest_args(phoenix_template, out))
    assert alone.exit_code == 1 and str(lock) in alone.stderr and "delete that file" in alone.stderr
    apart = prep(*manifest_args(phoenix_template, out, "--rank", 1, "--world-size", 2))
    assert (
        apart.exit_code == 0 and not (out / "manifest" / "summary.json").exists()
    )  # that node merges
    lock.unlink()
    assert prep(*manifest_args(phoenix_template, out)).exit_code == 0


def test_a_lock_whose_node_stopped_refreshing_it_is_taken_over(phoenix_template, tmp_path, caplog):
    """A task SIGKILLed on a node (or the node lost) leaves its rank's lock; a resubmission on
    another node takes it over once its heartbeat has been silent for PREP_LOCK_STALE_S."""
    out = tmp_path / "out"
    lock = Layout(out).run_lock("manifest", 0)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": "node-gone", "pid": 4242, "since": 0}))
    stale = time.time() - 601
    os.utime(lock, (stale, stale))
    result = prep(*manifest_args(phoenix_template, out))
    assert result.exit_code == 0, result.output
    assert "removing a lock left by a process that is gone" in caplog.text
    assert (out / "manifest" / "summary.json").is_file() and not lock.exists()


def test_a_held_lock_keeps_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setenv("PREP_LOCK_STALE_S", "2")  # a beat every 0.2 s
    lock = tmp_path / "rank-0.lock"
    with held_lock(lock) as holder:
        assert holder is None
        os.utime(lock, (0, 0))
        time.sleep(0.6)
        assert time.time() - lock.stat().st_mtime < 1.0
        other = json.loads(lock.read_text())
        lock.write_text(json.dumps({**other, "host": "another-node"}))
        with held_lock(lock) as elsewhere:  # refreshed: another node's live task, not taken
            assert elsewhere is not None and elsewhere.host == "another-node"
    assert not lock.exists()


@pytest.fixture(scope="module")
def published(phoenix_template, tiny_dinov2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("published") / "out"
    assert prep(*features_args(phoenix_template, tiny_dinov2, out)).exit_code == 0
    return out


def unit_parts(out: Path, split: str) -> list[tuple[int, Path, dict]]:
    parts = []
    for folder in sorted((out / "_units" / "features" / split).glob("[0-9]*")):
        parts += [
            (0, folder / info["name"], info)
            for info in json.loads((folder / "shards.json").read_text())
        ]
    return parts


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda parts: parts[1:], r"manifest sample\(s\) in no shard and not quarantined"),
        (lambda parts: parts + parts[:1], r"sample\(s\) written more than once"),
    ],
)
def test_publishing_fails_loudly_on_a_missing_or_duplicated_unit(
    published, tmp_path, change, message
):
    parts = unit_parts(published, "train")
    expected = {key for _, _, info in parts for key in info["keys"]}
    target = tmp_path / "shards" / "train"
    publish_split(target, "train", parts, expected, set(), {})
    before = file_digests(target)
    with pytest.raises(PrepError, match=message):
        publish_split(target, "train", change(parts), expected, set(), {})
    assert file_digests(target) == before and os.listdir(target.parent) == [
        "train"
    ]  # nothing half-published


def test_a_lost_unit_tar_fails_the_merge_and_keeps_the_published_shards(
    published, phoenix_template, tiny_dinov2
):
    before = file_digests(published / "shards")
    lost = unit_parts(published, "dev")[0][1]
    kept = lost.read_bytes()
    lost.unlink()
    try:
        result = prep(*features_args(phoenix_template, tiny_dinov2, published))
        assert result.exit_code == 1 and f"unit tar {lost} is missing" in result.stderr
        assert file_digests(published / "shards") == before
    finally:
        lost.write_bytes(kept)


def test_launch_environment_and_gpu_per_rank():
    launch = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "LOCAL_RANK": "1"}
    assert launched_together(1, 2, launch)
    assert not launched_together(0, 2, launch)  # --rank 0 given by hand: run apart
    assert not launched_together(0, 1, {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "x"})
    assert not launched_together(
        1, 2, {"RANK": "1", "WORLD_SIZE": "2"}
    )  # no rendezvous: a plain env
    assert rank_gpu(4, local_rank=5) == "cuda:1" and rank_gpu(8, local_rank=3) == "cuda:3"
    assert rank_gpu(0, local_rank=3) == "cuda"
