"""Shared fixtures: paths to ../shared, a CLI runner, small synthetic corpora in official layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline import synthetic
from pipeline.cli import app

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PHOENIX_DEV = SHARED / "data" / "phoenix14t_dev.csv"
HAND_CLIP = SHARED / "data" / "hand_clip.mp4"


def hand_clip_beside(folder: Path) -> str:
    """HAND_CLIP copied into ``folder``, for a CSV there (annotation paths stay inside its folder)."""
    shutil.copy(HAND_CLIP, folder / HAND_CLIP.name)
    return HAND_CLIP.name


def prep(*args: object):
    """Invoke the ``prep`` CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def manifest_rows(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / "manifest" / f"{split}.parquet").to_pylist()


def quarantine_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest" / "quarantine.parquet").to_pylist()


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> Path:
    """A tiny random DINOv2 saved with save_pretrained (hidden size 32), loaded like real weights."""
    from stages.features.dinov2 import write_tiny_dinov2

    return write_tiny_dinov2(tmp_path_factory.mktemp("models") / "dinov2-tiny")


@pytest.fixture(scope="session")
def phoenix_template(tmp_path_factory) -> Path:
    """40 real Phoenix14T dev sentences (frame counts capped at 12) in the release layout."""
    out = tmp_path_factory.mktemp("phoenix")
    samples = synthetic.samples_from_file(PHOENIX_DEV, clips=40, max_frames=12)
    return synthetic.write_phoenix14t(out, samples, size=(42, 52))


@pytest.fixture
def phoenix_root(phoenix_template, tmp_path) -> Path:
    """A private, writable copy of the Phoenix14T corpus (tests may damage it)."""
    return Path(shutil.copytree(phoenix_template, tmp_path / phoenix_template.name))


@pytest.fixture(scope="session")
def csl_template(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("csl")
    samples = synthetic.default_samples("zh", clips=10, frames=(6, 10))
    return synthetic.write_csl_daily(out, samples, size=(48, 48))


@pytest.fixture
def csl_root(csl_template, tmp_path) -> Path:
    return Path(shutil.copytree(csl_template, tmp_path / csl_template.name))


@pytest.fixture
def generic_csv(tmp_path) -> Path:
    samples = synthetic.default_samples("de", clips=5, frames=(8, 14))
    return synthetic.write_generic(tmp_path / "generic", samples, "de", size=(64, 48))
