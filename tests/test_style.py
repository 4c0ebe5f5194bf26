"""The code stays as ``ruff format`` writes it and as ``ruff check`` wants it (``make lint``)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

PACKAGES = ("pipeline", "stages", "exporters", "manifests", "recipes", "tests", "bench", "examples")


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PACKAGES], cwd=REPO, capture_output=True, text=True
    )


def test_ruff_format_and_check_pass():
    formatted = ruff("format", "--check")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    checked = ruff("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_no_code_opts_out_of_the_formatter():
    markers = ("# fmt: " + "skip", "# fmt: " + "off")  # spelled apart: this file holds neither
    opted_out = [
        f"{path.relative_to(REPO)}:{number}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(marker in line for marker in markers)
    ]
    assert not opted_out
