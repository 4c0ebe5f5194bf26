"""Prepared runs the exporters are tested on: a synthetic Phoenix14T corpus (frame folders)
and a generic corpus of videos, each through every stage with tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import synthetic
from tests.conftest import prep


def prepare(root: Path, out: Path, dataset: str, dinov2: Path, *extra: object) -> Path:
    """Every stage over ``root``: pseudo-glosses, kinematic hand captions, DINOv2 features
    with the frames stored (64 px), as a researcher would before exporting."""
    where = ["--dataset", dataset, "--root", root, "--out", out, "--quiet"]
    models = ["--captioner", "kinematic", "--dinov2", dinov2]
    frames = ["--with-frames", "--frame-size", 64]
    result = prep("run", "--stage", "all", *where, *models, *frames, *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def prepared_phoenix(tmp_path_factory, tiny_dinov2) -> Path:
    """12 Phoenix14T-layout clips of 8 to 20 PNG frames, prepared by every stage."""
    folder = tmp_path_factory.mktemp("export-phoenix")
    samples = synthetic.default_samples("de", clips=12, frames=(8, 20))
    root = synthetic.write_phoenix14t(folder / "corpus", samples, size=(42, 52))
    return prepare(root, folder / "out", "phoenix14t", tiny_dinov2)


@pytest.fixture(scope="session")
def prepared_videos(tmp_path_factory, tiny_dinov2) -> Path:
    """A generic corpus of 10 mp4 clips, prepared by every stage."""
    folder = tmp_path_factory.mktemp("export-videos")
    samples = synthetic.default_samples("de", clips=10, frames=(8, 20))
    csv = synthetic.write_generic(folder / "corpus", samples, "de")
    return prepare(csv, folder / "out", "generic", tiny_dinov2)
