"""prep status on a run that failed part-way, then on the finished run."""

from __future__ import annotations

from stages.features import FeaturesStage
from tests.conftest import prep


def status_rows(out):
    result = prep("status", "--out", out)
    assert result.exit_code == 0, result.output
    return {tuple(line.split()[:2]): line for line in result.output.splitlines()[1:]}


def test_status_shows_progress_quarantine_and_the_last_error(
    phoenix_root, tmp_path, tiny_dinov2, monkeypatch
):
    out = tmp_path / "out"
    original = FeaturesStage.run

    def crash_on_second_train_unit(self, unit, workdir, context):
        if unit.split == "train" and unit.index == 1:
            raise RuntimeError("simulated crash")
        return original(self, unit, workdir, context)

    monkeypatch.setattr(FeaturesStage, "run", crash_on_second_train_unit)
    args = (
        "run",
        "--stage",
        "features",
        "--dataset",
        "phoenix14t",
        "--root",
        phoenix_root,
        "--out",
        out,
        "--dinov2",
        tiny_dinov2,
        "--shard-clips",
        5,
        "--retries",
        0,
        "--quiet",
    )
    assert prep(*args).exit_code == 1
    rows = status_rows(out)
    train = rows[("features", "train")]
    done, total = (int(x) for x in train.split()[2].split("/"))
    assert done == total - 1 and "last error train/00001: RuntimeError: simulated crash" in train
    assert rows[("manifest", "train")].split()[2] == "1/1"
    monkeypatch.setattr(FeaturesStage, "run", original)
    assert prep(*args).exit_code == 0
    train = status_rows(out)[("features", "train")]
    assert train.split()[2] == f"{total}/{total}" and "last error" not in train
