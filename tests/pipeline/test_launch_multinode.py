"""Ranks across nodes and across runs: two torchrun processes joined over loopback as two nodes,
one node lost midway, and a world size that changes between runs (2, then 3, then 1 ranks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import registry, synthetic
from pipeline.layout import DONE_MARKER, Layout
from pipeline.shards import iter_tar_samples, sample_key
from tests.conftest import REPO, manifest_rows, phoenix_samples, prep
from tests.pipeline.prep_process import file_digests, free_port, prep_env
from tests.pipeline.test_determinism import write_keypoints

SPLITS = ("train", "dev", "test")
NODE_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(root, hand keypoints): 8 Phoenix14T-style clips of 8 frames, and keypoints for each."""
    folder = tmp_path_factory.mktemp("nodes-corpus")
    root = synthetic.write_phoenix14t(folder / "corpus", phoenix_samples(8, 8), size=(42, 52))
    write_keypoints(root, folder / "keypoints")
    return root, folder / "keypoints"


def run_args(corpus: tuple[Path, Path], model: Path, out: Path, stage: str = "all") -> list[str]:
    root, keypoints = corpus
    args = (
        *("run", "--stage", stage, "--dataset", "phoenix14t", "--root", root, "--out", out),
        *("--dinov2", model, "--hand-keypoints", keypoints, "--captioner", "kinematic"),
        *("--text-encoder", "none", "--chunk-frames", 4, "--unit-size", 1, "--shard-clips", 1),
        "--quiet",
    )
    return [str(a) for a in args]


def start_node(port: int, args: list[str], **env: str) -> subprocess.Popen:
    """One node's torchrun: 2 ranks, meeting the other node at the c10d store on ``port``."""
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2"),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "0"),
        *("-m", "pipeline.cli", *args),
    ]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=prep_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a node is stopped as a whole
    )


def children(pid: int) -> list[int]:
    """The ranks a torchrun started (each in a session of its own, so not in its process group)."""
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def stop(node: subprocess.Popen) -> tuple[str, str]:
    """Kill a node's torchrun and its ranks (by pid: they are ours) and collect its output."""
    for pid in (*children(node.pid), node.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return node.communicate()


def finish(node: subprocess.Popen, timeout: float = NODE_TIMEOUT_S) -> tuple[int, str, str]:
    try:
        stdout, stderr = node.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = stop(node)
        raise AssertionError(f"a node did not end within {timeout} s: {stderr[-2000:]}") from None
    return node.returncode, stdout, stderr


def test_two_nodes_of_two_ranks_give_the_bytes_of_one_process(small_corpus, tiny_dinov2, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    assert prep(*run_args(small_corpus, tiny_dinov2, one)).exit_code == 0
    port = free_port()
    nodes = [start_node(port, run_args(small_corpus, tiny_dinov2, many)) for _ in range(2)]
    results = [finish(node) for node in nodes]
    assert [code for code, _, _ in results] == [0, 0], [err[-3000:] for _, _, err in results]
    stderr = "".join(err for _, _, err in results)
    assert all(f"rank {r}/4 joined the process group (gloo)" in stderr for r in range(4))
    for stage in registry.names():
        assert "".join(out for _, out, _ in results).count(f"{stage} (v") == 1  # rank 0 merged
    assert {
        json.loads((f / "stats.json").read_text())["rank"]
        for f in (many / "_units" / "features").glob("*/[0-9]*")
    } == {0, 1, 2, 3}
    for stage in registry.names():
        for table in (one / stage).iterdir():
            if table.name != "summary.json":
                assert table.read_bytes() == (many / stage / table.name).read_bytes(), table
    for split in SPLITS:
        indexes = [
            json.loads((o / "shards" / split / "index.json").read_text()) for o in (one, many)
        ]
        urls = [[s.pop("url") for s in index["shardlist"]] for index in indexes]
        assert indexes[0] == indexes[1]
        for first, second in zip(*urls):
            assert (one / "shards" / split / first).read_bytes() == (
                many / "shards" / split / second
            ).read_bytes()


def committed(out: Path, stage: str) -> dict[str, int]:
    """``{unit id: marker mtime}`` of the committed units of ``stage``."""
    return {
        json.loads(m.read_text())["unit"]: m.stat().st_mtime_ns
        for m in Layout(out).units_dir(stage).glob(f"*/[0-9]*/{DONE_MARKER}")
    }


def test_a_lost_node_stops_the_other_in_one_line_and_a_rerun_resumes(
    small_corpus, tiny_dinov2, tmp_path
):
    out = tmp_path / "out"
    manifest = run_args(small_corpus, tiny_dinov2, out, "manifest")
    assert prep(*manifest).exit_code == 0
    args = run_args(small_corpus, tiny_dinov2, out, "features")
    port = free_port()
    nodes = [start_node(port, args, PREP_DIST_TIMEOUT="60") for _ in range(2)]
    deadline = time.monotonic() + NODE_TIMEOUT_S
    while not committed(out, "features") and time.monotonic() < deadline:
        time.sleep(0.05)
    if not committed(out, "features"):
        raise AssertionError(f"no features unit committed: {[stop(n)[1][-2000:] for n in nodes]}")
    lost, survivor = nodes[1], nodes[0]
    for pid in (lost.pid, *children(lost.pid)):  # the whole node goes: torchrun and its ranks
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    code, _, stderr = finish(survivor, timeout=120)
    assert code != 0 and time.monotonic() - started < 90
    said = [line for line in stderr.splitlines() if line.startswith("prep: ")]
    ends = [line for line in said if line.startswith(("prep: error:", "prep: stopped by"))]
    assert len(ends) == 2, stderr[-3000:]  # one line from each rank of the surviving node:
    assert all(  # it saw the lost ranks leave, or its torchrun lost the rendezvous store and stopped it
        "another rank left the process group" in line or "stopped by SIGTERM" in line
        for line in ends
    ), ends
    assert f'File "{REPO / "pipeline"}' not in stderr  # torchrun's own report follows, not ours
    lost.communicate()
    before = committed(out, "features")
    result = prep(*args)
    assert result.exit_code == 0, result.output
    after = committed(out, "features")
    assert all(after[unit] == mtime for unit, mtime in before.items())  # not redone
    keys = Counter(
        key
        for split in SPLITS
        for tar in (out / "shards" / split).glob("*.tar")
        for key, _ in iter_tar_samples(tar)
    )
    assert set(keys.values()) == {1}
    assert set(keys) == {sample_key(r["id"]) for s in SPLITS for r in manifest_rows(out, s)}


def test_the_world_size_may_change_between_runs(phoenix_template, tiny_dinov2, tmp_path):
    """2 ranks (only rank 0 ran), then 3 (ranks 0 and 1 ran), then 1: no unit is made twice, and
    the end result is one process's, byte for byte (shard names too: the last run merged alone)."""
    out, one = tmp_path / "out", tmp_path / "one"
    args = [
        *("run", "--stage", "features", "--dataset", "phoenix14t", "--root", phoenix_template),
        *("--dinov2", tiny_dinov2, "--shard-clips", 4, "--unit-size", 8, "--quiet"),
    ]
    assert prep(*args, "--out", one).exit_code == 0
    assert prep(*args[:2], "manifest", *args[3:], "--out", out).exit_code == 0
    seen: dict[str, int] = {}
    for rank, world in ((0, 2), (0, 3), (1, 3), (0, 1)):
        result = prep(*args, "--out", out, "--rank", rank, "--world-size", world)
        assert result.exit_code == 0, result.output
        now = committed(out, "features")
        assert all(now[unit] == mtime for unit, mtime in seen.items())  # never redone
        assert len(now) > len(seen)  # each run did new work
        seen = now
    assert file_digests(one / "shards") == file_digests(out / "shards")
    for name in ("train.parquet", "dev.parquet", "test.parquet"):
        assert (one / "manifest" / name).read_bytes() == (out / "manifest" / name).read_bytes()
    assert prep("verify", "--out", out).exit_code == 0
