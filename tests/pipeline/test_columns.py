"""Exported columns belong to the framework: a stage declares each array column per clip or per
frame with its dtype, and the framework names its shard field, stores it, describes it in the
index, loads per-frame ones by default, checks their lengths, and keeps a clip that an upstream
stage quarantined with ``missing`` in its json and zeros plus ``present`` in the loader.

The plug-in below (installed on ``PYTHONPATH`` with a ``dist-info``, as ``pip install`` would)
exports each clip's selected frame numbers per frame, their first and last per clip, and
quarantines every third clip.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import synthetic
from pipeline.errors import ShardError
from pipeline.loader import make_loader
from pipeline.stage import Export, per_clip, per_frame
from tests.pipeline.prep_process import prep_env, run_prep

STAGE = '''
"""Frame numbers as exported columns: per frame, per clip, and a quarantine."""

from dataclasses import dataclass

import pyarrow as pa

from pipeline import manifest as m
from pipeline.stage import Export, Planned, option, per_clip, per_frame, slice_units
from pipeline.table_stage import TableStage, UnitTables, quarantine_row
from pipeline.video import FrameSelection


@dataclass(frozen=True)
class FrameNumberOptions:
    short_by: int = option(0, "Export this many frame numbers too few (a broken stage).", min=0)


class FrameNumberStage(TableStage):
    name = "frame-numbers"
    version = 1
    options_class = FrameNumberOptions
    requires = ("manifest",)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("split", pa.string()),
            ("frame_number", pa.list_(pa.float64())),
            ("frame_span", pa.list_(pa.int64())),
        ]
    )
    exports = Export((), arrays=(per_frame("frame_number"), per_clip("frame_span", "int16")))
    cost_unit = "clip"

    def plan(self):
        units = []
        for split in m.manifest_splits(self.layout):
            path = m.manifest_table(self.layout, split)
            selection = FrameSelection(**m.read_provenance(path)["frame_selection"])
            rows = [
                {"id": r["id"], "frames": selection.indices(r["num_frames"]).tolist()}
                for r in m.read_table(path).to_pylist()
            ]
            units += slice_units(split, rows, 4)
        return Planned(units)

    def process(self, unit, context):
        rows, rejected = [], []
        for number, item in enumerate(unit.items):
            if number % 3 == 2:
                rejected.append(quarantine_row(self, unit, item, "third_clip", "every third"))
                continue
            frames = item["frames"][: len(item["frames"]) - self.options.short_by]
            span = [frames[0], frames[-1]]
            rows.append(
                {"id": item["id"], "split": unit.split, "frame_number": frames, "frame_span": span}
            )
        return UnitTables(rows, rejected)
'''


def install(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    (folder / "frame_number_stage.py").write_text(STAGE)
    info = folder / "frame_number_stage-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: frame-number-stage\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[prep.stages]\nframe-numbers = frame_number_stage:FrameNumberStage\n"
    )
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return prep_env(PYTHONPATH=path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_dinov2) -> tuple[Path, list[str], dict]:
    root = tmp_path_factory.mktemp("columns")
    samples = synthetic.default_samples("de", clips=9, frames=(6, 14))
    corpus = synthetic.write_phoenix14t(root / "corpus", samples, size=(40, 48))
    env = install(root / "plugin")
    flags = ["--dataset", "phoenix14t", "--root", corpus, "--out", root / "out", "--quiet"]
    flags += ["--max-quarantine-share", 1]
    for stage in ("frame-numbers", "features"):
        result = run_prep("run", "--stage", stage, *flags, "--dinov2", tiny_dinov2, env=env)
        assert result.returncode == 0, result.stderr
    return root / "out", flags, env


def samples(folder: Path) -> dict[str, dict]:
    """Key -> {field: bytes} of every shard sample of a split folder."""
    found: dict[str, dict] = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, field = member.name.partition(".")
                found.setdefault(key, {})[field] = tar.extractfile(member).read()
    return found


def test_array_columns_are_stored_as_declared_and_the_left_out_ones_are_named(prepared):
    out, _, _ = prepared
    index = json.loads((out / "shards" / "train" / "index.json").read_text())
    assert index["arrays"]["frame_number.npy"] == {
        "per": "frame",
        "dtype": "float32",
        "shape_tail": [],
    }
    assert index["arrays"]["frame_span.npy"]["per"] == "clip"
    assert index["arrays"]["dinov2.npy"]["per"] == "frame"
    kept = absent = 0
    for fields in samples(out / "shards" / "train").values():
        meta = json.loads(fields["json"])
        if "frame_number.npy" in fields:
            kept += 1
            numbers = np.load(io.BytesIO(fields["frame_number.npy"]))
            assert numbers.dtype == np.float32 and numbers.tolist() == meta["frame_indices"]
            assert meta["fields"]["frame_span.npy"] == {
                "dtype": "int16",
                "shape": [2],
                "per_clip": True,
            }
            assert "missing" not in meta
        else:
            absent += 1
            assert "frame_span.npy" not in fields
            reason = "frame-numbers: third_clip"
            assert meta["missing"] == {"frame_number": reason, "frame_span": reason}
    assert kept and absent


def test_the_loader_loads_per_frame_columns_and_fills_the_left_out_ones(prepared):
    out, _, _ = prepared
    loader = make_loader(out, "train", batch_size=8, num_workers=0, train=False)
    seen_absent = False
    for batch in loader:
        assert set(batch["present"]) == {"dinov2", "frame_number"}
        for row, meta in enumerate(batch["json"]):
            length = int(batch["lengths"][row])
            numbers = batch["frame_number"][row, :length]
            if "missing" in meta:
                seen_absent = True
                assert not batch["present"]["frame_number"][row]
                assert torch.count_nonzero(numbers) == 0
            else:
                assert batch["present"]["frame_number"][row]
                assert numbers.tolist() == meta["frame_indices"]
        assert batch["present"]["dinov2"].all()
    assert seen_absent
    spans = make_loader(
        out, "train", fields=["dinov2", "frame_span"], batch_size=8, num_workers=0, train=False
    )
    batch = next(iter(spans))
    assert batch["frame_span"].shape == (len(batch["json"]), 2)
    for row, meta in enumerate(batch["json"]):
        frames = meta["frame_indices"]
        expected = [0, 0] if "missing" in meta else [frames[0], frames[-1]]
        assert batch["frame_span"][row].tolist() == expected
    with pytest.raises(ValueError, match="all per clip"):
        make_loader(out, "train", fields=["frame_span"], num_workers=0)


def test_verify_holds_each_array_column_to_its_table(prepared):
    out, flags, env = prepared
    assert run_prep("verify", "--out", out, "--max-quarantine-share", 1, env=env).returncode == 0


def test_a_per_frame_column_of_the_wrong_length_stops_the_run_in_one_line(
    tmp_path, prepared, tiny_dinov2
):
    _, flags, env = prepared
    out = tmp_path / "out"
    flags = [str(f) for f in flags]
    flags[flags.index("--out") + 1] = str(out)
    short = run_prep("run", "--stage", "frame-numbers", *flags, "--short-by", 1, env=env)
    assert short.returncode == 0, short.stderr
    features = run_prep("run", "--stage", "features", *flags, "--dinov2", tiny_dinov2, env=env)
    assert features.returncode == 1 and "Traceback" not in features.stderr
    last = features.stderr.strip().splitlines()[-1]
    assert "frame-numbers exported frame_number for" in last and "selected frames" in last, last


def test_an_export_declaration_follows_the_naming_rule():
    assert Export(("a",), arrays=(("b", "b.npy"),)).arrays == (per_clip("b"),)
    assert Export(("a",), arrays=(per_frame("b", "f2"),)).columns == ("a", "b")
    assert per_frame("b", "f2").dtype == "float16"
    with pytest.raises(ValueError, match="named <column>.npy by the framework"):
        Export(("a",), arrays=(("b", "b_emb.npy"),))
    with pytest.raises(ValueError, match="missing is a key prep writes"):
        Export(("missing",))
    with pytest.raises(ValueError, match="not numeric"):
        per_clip("b", "U8")


def copied(prepared_out: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(prepared_out, out)
    return out


def test_verify_counts_the_rows_of_a_per_frame_column(prepared, tmp_path):
    out = copied(prepared[0], tmp_path)
    shard = sorted((out / "shards" / "train").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    name = next(m.name for m, _ in members if m.name.endswith(".frame_number.npy"))
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for member, data in members:
            if member.name == name:
                buffer = io.BytesIO()
                np.save(buffer, np.load(io.BytesIO(data))[:-1])
                data = buffer.getvalue()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    result = run_prep("verify", "--out", out, "--max-quarantine-share", 1, env=prepared[2])
    assert result.returncode == 1
    key = name.split(".")[0]
    assert f"{key}: frame_number.npy has" in result.stdout and "rows for" in result.stdout


def test_an_index_describing_arrays_prep_never_writes_is_one_line(prepared, tmp_path):
    out = copied(prepared[0], tmp_path)
    path = out / "shards" / "train" / "index.json"
    index = json.loads(path.read_text())
    index["arrays"]["frame_number.npy"]["dtype"] = "object"
    path.write_text(json.dumps(index))
    with pytest.raises(ShardError, match="arrays entry 'frame_number.npy' is not prep's"):
        make_loader(out, "train", num_workers=0, allow_stale=True)
