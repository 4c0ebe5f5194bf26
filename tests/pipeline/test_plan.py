"""``prep plan``: per-stage estimates for the whole corpus from the manifest and a real pilot run."""

from __future__ import annotations

import json
import re

import pytest

from pipeline import synthetic
from pipeline.plan import CorpusSize, StageEstimate, corpus_size
from tests.conftest import manifest_rows, prep

STAGES = ("manifest", "pseudo-gloss", "hand-captions", "features")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A synthetic Phoenix14T corpus (6 clips) whose manifest is done."""
    base = tmp_path_factory.mktemp("plan")
    root = synthetic.write_phoenix14t(
        base / "corpus", synthetic.default_samples("de", 6, (8, 12)), size=(52, 42)
    )
    out = base / "out"
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "phoenix14t",
        "--root",
        root,
        "--out",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return out


def listing(folder):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def table_rows(stdout: str) -> dict[str, list[str]]:
    return {
        line.split()[0]: re.split(r"\s{2,}", line.strip())
        for line in stdout.splitlines()
        if line.split() and line.split()[0] in STAGES
    }


@pytest.fixture(scope="module")
def planned(prepared, tiny_dinov2):
    """``prep plan`` run once on ``prepared``: its result and the folder listing before it."""
    before = listing(prepared)
    result = prep(
        "plan",
        "--out",
        prepared,
        "--pilot-clips",
        2,
        "--devices",
        4,
        "--dinov2",
        tiny_dinov2,
        "--captioner",
        "kinematic",
        "--text-encoder",
        "none",
    )
    assert result.exit_code == 0, result.output
    return result, before


def test_plan_estimates_every_stage_from_a_pilot_and_writes_only_plan_json(prepared, planned):
    result, before = planned
    clips = sum(len(manifest_rows(prepared, s)) for s in ("train", "dev", "test"))
    frames = sum(
        r["num_frames"] for s in ("train", "dev", "test") for r in manifest_rows(prepared, s)
    )
    assert corpus_size(prepared) == CorpusSize(clips, frames)
    rows = table_rows(result.stdout)
    assert list(rows) == list(STAGES)
    for cells in rows.values():
        assert cells[1:3] == [str(clips), str(frames)], cells
        here, on_four = float(cells[6]), float(cells[7])
        assert here > 0 and 0 < on_four <= here, cells
    assert rows["features"][5].endswith("s/frame") and rows["pseudo-gloss"][5].endswith("s/clip")
    assert rows["features"][3] == rows["hand-captions"][3]  # the same pilot clips for every stage

    after = listing(prepared)
    assert set(after) - set(before) == {"plan.json"}
    assert {k: v for k, v in after.items() if k != "plan.json"} == before  # nothing else touched
    record = json.loads((prepared / "plan.json").read_text())
    assert record["devices"] == 4 and [s["stage"] for s in record["stages"]] == list(STAGES)


def test_estimates_scale_with_corpus_frames(prepared, planned):
    """The recorded pilot gives start-up + rate x items: twice the frames, twice the variable part."""
    record = json.loads((prepared / "plan.json").read_text())
    for entry in record["stages"]:
        estimate = StageEstimate(**{k: entry[k] for k in StageEstimate.__dataclass_fields__})
        assert estimate.seconds_per_item > 0, entry
        assert estimate.hours(1) == pytest.approx(entry["hours_here"])
        bigger = estimate.for_corpus(CorpusSize(2 * estimate.clips, 2 * estimate.frames))
        variable = estimate.hours(1) - estimate.startup_s / 3600
        assert bigger.hours(1) - estimate.hours(1) == pytest.approx(variable)
        assert bigger.device_hours(4) > estimate.device_hours(4)


def test_plan_refuses_what_it_cannot_measure(prepared, tmp_path):
    result = prep("plan", "--out", tmp_path / "empty")
    assert result.exit_code == 1 and "no manifest under" in result.stderr
    result = prep("plan", "--out", prepared, "--devices", 0)
    assert result.exit_code == 1 and "--devices must be at least 1" in result.stderr
    result = prep(
        "plan", "--out", prepared, "--stage", "features", "--features", "hamer", "--pilot-clips", 1
    )
    assert result.exit_code == 1
    assert "the pilot of stage features failed" in result.stderr and "--hamer" in result.stderr
