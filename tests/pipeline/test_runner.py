"""Work units, atomic commits, resumption after an interruption, ranks and determinism."""

import json

from pipeline.config import rank_from_environment
from pipeline.layout import DONE_MARKER, TMP_PREFIX
from stages.manifest import ManifestStage
from tests.conftest import manifest_rows, prep


def run_args(root, out, *extra):
    return [
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
        "4",
        "--quiet",
        *extra,
    ]


def unit_markers(out):
    return sorted((out / "_units" / "manifest").glob(f"*/*/{DONE_MARKER}"))


def test_interrupted_run_resumes_without_redoing_or_losing_units(
    phoenix_root, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    done = []
    original = ManifestStage.run

    def crash_after_three(self, unit, workdir, context):
        if len(done) == 3:
            (workdir / "partial.bin").write_bytes(b"half")  # a unit in flight when the process dies
            raise KeyboardInterrupt
        done.append(unit.id)
        return original(self, unit, workdir, context)

    monkeypatch.setattr(ManifestStage, "run", crash_after_three)
    interrupted = prep(*run_args(phoenix_root, out))
    assert interrupted.exit_code != 0
    assert len(unit_markers(out)) == 3
    assert not (out / "manifest" / "train.parquet").exists()  # nothing merged from a partial run
    first_markers = {p: p.read_bytes() for p in unit_markers(out)}

    redone = []
    monkeypatch.setattr(
        ManifestStage, "run", lambda self, u, w, c: redone.append(u.id) or original(self, u, w, c)
    )
    result = prep(*run_args(phoenix_root, out))
    assert result.exit_code == 0, result.output
    assert not set(redone) & set(done) and len(redone) + len(done) == 10  # 40 samples / 4 per unit
    assert all(p.read_bytes() == b for p, b in first_markers.items())
    assert not list(out.rglob(f"{TMP_PREFIX}*"))  # no temporary folder left under any name
    resumed = {
        s: (out / "manifest" / f"{s}.parquet").read_bytes() for s in ("train", "dev", "test")
    }

    fresh = tmp_path / "fresh"
    assert prep(*run_args(phoenix_root, fresh)).exit_code == 0
    assert resumed == {s: (fresh / "manifest" / f"{s}.parquet").read_bytes() for s in resumed}

    again = []
    monkeypatch.setattr(
        ManifestStage, "run", lambda self, u, w, c: again.append(u.id) or original(self, u, w, c)
    )
    assert prep(*run_args(phoenix_root, out)).exit_code == 0 and again == []
    assert prep(*run_args(phoenix_root, out, "--overwrite")).exit_code == 0 and len(again) == 10


def test_changed_options_are_refused_without_overwrite(phoenix_root, tmp_path):
    out = tmp_path / "out"
    assert prep(*run_args(phoenix_root, out)).exit_code == 0
    result = prep(*run_args(phoenix_root, out, "--min-frames", "3"))
    assert result.exit_code == 1 and "--overwrite" in result.stderr


def test_two_ranks_share_units_without_overlap_and_the_last_merges(phoenix_root, tmp_path):
    out = tmp_path / "out"
    first = prep(*run_args(phoenix_root, out, "--rank", "0", "--world-size", "2"))
    assert first.exit_code == 0 and not (out / "manifest" / "summary.json").exists()
    assert len(unit_markers(out)) == 5
    second = prep(*run_args(phoenix_root, out, "--rank", "1", "--world-size", "2"))
    assert second.exit_code == 0 and len(unit_markers(out)) == 10
    ids = [r["id"] for s in ("train", "dev", "test") for r in manifest_rows(out, s)]
    assert len(ids) == len(set(ids)) == 40
    summary = json.loads((out / "manifest" / "summary.json").read_text())
    assert summary["splits"]["dev"]["samples"] == 8


def test_two_worker_processes_give_the_same_bytes(phoenix_root, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert prep(*run_args(phoenix_root, one)).exit_code == 0
    assert prep(*run_args(phoenix_root, two, "--workers", "2")).exit_code == 0
    for name in ("train.parquet", "dev.parquet", "test.parquet", "quarantine.parquet"):
        assert (one / "manifest" / name).read_bytes() == (two / "manifest" / name).read_bytes()


def test_rank_from_launcher_environments():
    assert rank_from_environment({}) == (0, 1)
    assert rank_from_environment({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "2"}
    assert rank_from_environment(slurm) == (3, 4)


def test_a_unit_that_fails_once_succeeds_on_its_retry(phoenix_root, tmp_path, monkeypatch):
    out, attempts = tmp_path / "out", []
    original = ManifestStage.run

    def flaky(self, unit, workdir, context):
        attempts.append(unit.id)
        if attempts.count(unit.id) == 1 and unit.id.endswith("train/00001"):
            raise OSError("network file system hiccup")
        return original(self, unit, workdir, context)

    monkeypatch.setattr(ManifestStage, "run", flaky)
    result = prep(*run_args(phoenix_root, out, "--retries", "1"))
    assert result.exit_code == 0, result.output
    assert len([a for a in attempts if a.endswith("train/00001")]) == 2
    assert len(attempts) == 11 and not list((out / "_units" / "manifest").glob("_errors/*"))
    fresh = tmp_path / "fresh"
    assert prep(*run_args(phoenix_root, fresh)).exit_code == 0
    assert (out / "manifest" / "train.parquet").read_bytes() == (
        fresh / "manifest" / "train.parquet"
    ).read_bytes()


def test_a_unit_failing_inside_a_worker_pool_fails_the_run_and_resumes(phoenix_root, tmp_path):
    """A unit that cannot commit (its folder's name is taken by a file) fails in a worker process;
    the other units commit, the run exits 1 naming it, and a rerun redoes only that unit."""
    out = tmp_path / "out"
    blocked = out / "_units" / "manifest" / "dev" / "00001"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")
    result = prep(*run_args(phoenix_root, out, "--workers", "2", "--retries", "0"))
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "stage manifest: 1 unit(s) failed, first dev/00001" in line and "traceback in" in line
    assert len(unit_markers(out)) == 9 and not (out / "manifest" / "summary.json").exists()
    blocked.unlink()
    before = {p: p.read_bytes() for p in unit_markers(out)}
    result = prep(*run_args(phoenix_root, out, "--workers", "2"))
    assert result.exit_code == 0, result.output
    assert len(unit_markers(out)) == 10 and all(p.read_bytes() == b for p, b in before.items())


def test_a_stage_version_bump_makes_finished_units_stale(phoenix_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert prep(*run_args(phoenix_root, out)).exit_code == 0
    monkeypatch.setattr(ManifestStage, "version", ManifestStage.version + 1)
    result = prep(*run_args(phoenix_root, out))
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    result = prep(*run_args(phoenix_root, out, "--overwrite"))
    assert result.exit_code == 0, result.output
    markers = [json.loads(p.read_text()) for p in unit_markers(out)]
    assert {m["stage_version"] for m in markers} == {ManifestStage.version}
