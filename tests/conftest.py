"""Shared fixtures: a CLI runner, small synthetic corpora in official layouts, and the real
material in ../shared (present on CI, absent on a fresh clone).

Every behaviour is checked on material the tests generate; tests that need a real file from
../shared on top ask for it through :func:`shared_file`, which skips with one line naming the
file when it is absent, and fails instead on CI (``CI=true``), where nothing may be skipped.
"""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline import synthetic
from pipeline.cli import app

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HAND_CLIP_FRAMES, HAND_CLIP_SIZE, HAND_CLIP_FPS = 58, (540, 720), Fraction(359, 12)


def missing(reason: str) -> None:
    """Skip with ``reason``; on CI (``CI=true``), where everything is installed, fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI runs every test and has it")
    pytest.skip(reason)


def shared_file(relative: str) -> Path:
    """``../shared/<relative>``, or a skip naming it (a failure on CI, where it must be there)."""
    path = SHARED / relative
    if not path.exists():
        missing(f"needs ../shared/{relative}")
    return path


def debian_tool(names: tuple[str, ...], package: str) -> str:
    """The path of the first of ``names`` on PATH, or a skip naming the package (.ci/run installs it)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    missing(
        f"needs {names[0]} (apt-get install -y --no-install-recommends {package}; .ci/run installs it)"
    )


def copy_beside(clip: Path, folder: Path, name: str | None = None) -> str:
    """``clip`` copied into ``folder`` (annotation paths must stay inside the dataset root)."""
    target = folder / (name or clip.name)
    shutil.copy(clip, target)
    return target.name


def one_clip_csv(clip: Path, folder: Path, text: str = "eine hand hebt sich") -> Path:
    """A generic-layout ``clips.csv`` in ``folder`` naming ``clip`` (copied beside it) as the
    one German test sample ``hand_clip``."""
    annotations = folder / "clips.csv"
    annotations.write_text(
        f"id,path,text,language,split\nhand_clip,{copy_beside(clip, folder)},{text},de,test\n"
    )
    return annotations


def hamer_features_of_one_clip(clip: Path, folder: Path, checkpoint, config, *flags) -> dict:
    """The shard fields of the one sample the features stage writes when it runs hands and
    HaMeR on ``clip`` through the CLI (which must succeed)."""
    from pipeline.shards import iter_tar_samples

    out = folder / "out"
    annotations = one_clip_csv(clip, folder)
    features = ("--features", "hands,hamer", "--hamer", checkpoint, "--hamer-config", config)
    result = run_generic("features", annotations, out, *features, *flags)
    assert result.exit_code == 0, result.output
    ((_key, fields),) = iter_tar_samples(next((out / "shards" / "test").glob("*.tar")))
    return fields


@pytest.fixture(scope="session")
def phoenix_dev_csv() -> Path:
    """519 real Phoenix14T dev sentences (``name|num_frames|orth|translation``)."""
    return shared_file("data/phoenix14t_dev.csv")


@pytest.fixture(scope="session")
def real_hand_clip() -> Path:
    """A real h264 clip, 540x720, 58 frames at 359/12 fps: a person raises an open hand."""
    return shared_file("data/hand_clip.mp4")


@pytest.fixture(scope="session")
def synthetic_hand_clip(tmp_path_factory) -> Path:
    """An h264 clip with the real hand clip's size, length and frame rate, written here."""
    path = tmp_path_factory.mktemp("clips") / "synthetic_clip.mp4"
    frames = synthetic.render_frames(HAND_CLIP_FRAMES, *HAND_CLIP_SIZE, "hand-clip")
    return synthetic.write_h264(path, frames, HAND_CLIP_FPS)


@pytest.fixture(params=["synthetic", "real"])
def hand_clip(request) -> Path:
    """Each test that takes it runs on the generated clip, and on the real one where present."""
    return request.getfixturevalue(f"{request.param}_hand_clip")


def prep(*args: object):
    """Invoke the ``prep`` CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def run_generic(stage: str, root: Path, out: Path, *flags: object):
    """``prep run --stage STAGE --dataset generic --root ROOT --out OUT --quiet FLAGS...``."""
    return prep(
        "run",
        "--stage",
        stage,
        "--dataset",
        "generic",
        "--root",
        root,
        "--out",
        out,
        "--quiet",
        *flags,
    )


def manifest_rows(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / "manifest" / f"{split}.parquet").to_pylist()


def quarantine_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest" / "quarantine.parquet").to_pylist()


class InertConfigNode(dict):
    """Stands in for the yacs ``CfgNode`` the released checkpoint pickles under hyper_parameters
    (a dict subclass that the weights-only unpickler refuses)."""


TINY_HAMER_SIZES = {
    "backbone": {
        "img_size": [256, 192],
        "patch_size": 16,
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 4,
    },
    "head": {"dim": 128, "depth": 2, "heads": 2, "mlp_dim": 64, "dim_head": 16, "context_dim": 64},
}


@pytest.fixture(scope="session")
def tiny_hamer(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, config): a small random HaMeR laid out like the released Lightning checkpoint
    (weights under state_dict, unused mano.*/discriminator.* entries, a pickled config object)."""
    import json

    import torch

    from stages.hands.hamer import Hamer, HamerConfig

    folder = tmp_path_factory.mktemp("hamer")
    config = folder / "config.json"
    config.write_text(json.dumps(TINY_HAMER_SIZES))
    torch.manual_seed(0)
    state = Hamer(HamerConfig.from_file(config)).state_dict()
    state.update(
        {
            "mano.shapedirs": torch.zeros(778, 3, 10),
            "discriminator.D_conv1.weight": torch.zeros(32, 9, 1, 1),
        }
    )
    checkpoint = folder / "hamer.ckpt"
    torch.save(
        {"state_dict": state, "hyper_parameters": InertConfigNode(MODEL="x"), "epoch": 0},
        checkpoint,
    )
    return checkpoint, config


@pytest.fixture(scope="session")
def hamer_reference() -> Path:
    """The reference HaMeR's tiny checkpoint, config and outputs (``../shared/testvectors``)."""
    return shared_file("testvectors/hamer_tiny")


def raised_hand_keypoints(folder: Path, clip_id: str) -> Path:
    """Per-hand keypoints ``[T, 2, 21, 3]`` for the hand clip's frames: a right hand resting at the
    bottom edge for 16 frames, rising to face height over the next 16, then lowering again."""
    width, height = HAND_CLIP_SIZE
    rest, top, frames = 690.0, 220.0, HAND_CLIP_FRAMES
    heights = np.concatenate(
        [np.full(16, rest), np.linspace(rest, top, 16), np.linspace(top, rest + 10, frames - 32)]
    )
    spread = np.random.default_rng(0).uniform(-25, 25, (21, 2))
    points = np.zeros((frames, 2, 21, 3), np.float32)
    points[:, 1, :, 0] = width * 0.35 + spread[:, 0]
    points[:, 1, :, 1] = np.minimum(heights[:, None] + spread[:, 1], height - 1)
    points[:, 1, :, 2] = 0.9
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{clip_id}.npy", points)
    return folder


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> Path:
    """A tiny random DINOv2 saved with save_pretrained (hidden size 32), loaded like real weights."""
    from stages.features.demo import write_tiny_dinov2

    return write_tiny_dinov2(tmp_path_factory.mktemp("models") / "dinov2-tiny")


def phoenix_samples(clips: int, max_frames: int) -> list[synthetic.SyntheticSample]:
    """German weather-forecast sentences written here, ``max_frames`` frames each (as real
    Phoenix14T clips, all longer, are when capped)."""
    return synthetic.default_samples("de", clips=clips, frames=(max_frames, max_frames))


@pytest.fixture(scope="session")
def phoenix_template(tmp_path_factory) -> Path:
    """40 Phoenix14T-style samples (at most 12 frames each) in the release layout."""
    out = tmp_path_factory.mktemp("phoenix")
    return synthetic.write_phoenix14t(out, phoenix_samples(40, 12), size=(42, 52))


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
