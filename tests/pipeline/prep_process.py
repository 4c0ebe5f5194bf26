"""``prep`` as a separate process (for launchers, kills and hash seeds), and output digests."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def prep_env(**extra: str) -> dict[str, str]:
    """The test's environment without launcher variables, one compute thread per process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        and not k.startswith("SLURM_")
    }
    env.update({"OMP_NUM_THREADS": "1", "PREP_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def prep_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *(str(a) for a in args)]


def run_prep(
    *args: object, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return run_command(prep_command(*args), env=env, timeout=timeout)


def run_command(
    command: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPO,
        env=env or prep_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_prep(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        prep_command(*args),
        cwd=REPO,
        env=env or prep_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def file_digests(folder: Path, skip=lambda relative: False) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path, except those ``skip`` names."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not skip(relative):
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
