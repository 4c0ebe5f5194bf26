"""The environment's failures, as a user meets them: one line saying what to fix (a traceback
only with --debug), SIGTERM saying a rerun resumes, a second run of a stage on the same --out
refused at once, no temporary file left by a full disk, and no native library chatter."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import sys
import time

from pipeline import storage
from pipeline.layout import TMP_PREFIX, Layout
from tests.conftest import prep
from tests.pipeline.prep_process import prep_command, prep_env, run_prep

REPO_FLAGS = ("--dataset", "phoenix14t", "--quiet")


def test_an_os_error_is_one_line_and_a_traceback_only_with_debug(tmp_path, phoenix_template):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--root",
        phoenix_template,
        "--out",
        blocker / "out",
        *REPO_FLAGS,
    )
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("prep: error: Not a directory") and str(blocker) in line
    debug = prep(
        "--debug",
        "run",
        "--stage",
        "manifest",
        "--root",
        phoenix_template,
        "--out",
        blocker / "out",
        *REPO_FLAGS,
    )
    assert debug.exit_code != 0 and isinstance(debug.exception, NotADirectoryError)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(
    tmp_path, phoenix_template, monkeypatch
):
    real_fsync, calls = storage.os.fsync, []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) > 6:  # a few files get written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", full_disk)
    out = tmp_path / "out"
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--root",
        phoenix_template,
        "--out",
        out,
        *REPO_FLAGS,
        "--retries",
        0,
    )
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "No space left on device" in line
    leftovers = [p for p in out.rglob(f"{TMP_PREFIX}*") if p.is_file()]
    assert leftovers == []


def test_sigterm_says_the_run_stopped_and_a_rerun_resumes(tmp_path, phoenix_template, tiny_dinov2):
    out = tmp_path / "out"
    args = (
        "run",
        "--stage",
        "features",
        "--root",
        phoenix_template,
        "--out",
        out,
        "--dinov2",
        tiny_dinov2,
        "--shard-clips",
        3,
        *REPO_FLAGS,
    )
    process = subprocess.Popen(
        prep_command(*args),
        env=prep_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    units = Layout(out).units_dir("features")
    deadline = time.monotonic() + 120
    while (
        not list(units.glob("*/[0-9]*/_done.json"))
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "prep: stopped by SIGTERM; finished units are kept: run the same command again to resume"
    )
    done = len(list(units.glob("*/[0-9]*/_done.json")))
    again = run_prep(*args)
    assert again.returncode == 0, again.stderr
    assert f"{done} done" in again.stderr or done >= 1
    assert prep("verify", "--out", out).exit_code == 0


def test_a_second_run_of_a_stage_on_the_same_out_exits_at_once(tmp_path, phoenix_template):
    out = tmp_path / "out"
    lock = Layout(out).run_lock("manifest", 0)
    lock.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(
            f'{{"host": "{socket.gethostname()}", "pid": {other.pid}, "since": {time.time()}}}\n'
        )
        result = prep(
            "run", "--stage", "manifest", "--root", phoenix_template, "--out", out, *REPO_FLAGS
        )
        assert result.exit_code == 1
        [line] = result.stderr.strip().splitlines()
        assert (
            f"stage manifest (rank 0) is already running on this --out: process {other.pid}" in line
        )
        assert str(lock) in line and not (out / "manifest").exists()
    finally:
        other.kill()
        other.wait()
    result = prep(
        "run", "--stage", "manifest", "--root", phoenix_template, "--out", out, *REPO_FLAGS
    )
    assert result.exit_code == 0, result.output  # the holder is gone: its lock is stale
    assert not lock.exists()


def test_mediapipe_prints_nothing_over_the_progress_bars(tmp_path, generic_csv):
    result = run_prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        "generic",
        "--root",
        generic_csv,
        "--out",
        tmp_path / "out",
        "--features",
        "hands",
    )
    assert result.returncode == 0, result.stderr
    assert "W0000" not in result.stderr and "Feedback manager" not in result.stderr
    assert "XNNPACK" not in result.stderr


def test_a_native_message_written_after_a_progress_bar_is_cut_off_it():
    from pipeline.native_logs import kept_part

    bar = b"\rfeatures:  60%|######    | 3/5"
    assert kept_part(bar + b"W0000 00:00:1796 feedback_manager.cc:114] Feedback manager ...") == bar
    assert kept_part(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") == b""
    assert (
        kept_part(b"prep: error: --root does not exist") == b"prep: error: --root does not exist\n"
    )
