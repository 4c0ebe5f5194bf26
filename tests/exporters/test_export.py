"""``prep export`` itself: formats listed from the registry, bad choices named in one line, an
interrupted export resumed after its last finished split with the same bytes."""

from __future__ import annotations

import json

from exporters.signjoey import SignJoeyExporter
from pipeline.export import trainer_link
from tests.conftest import prep


def test_the_installed_formats_are_listed_with_their_trainers():
    result = prep("exports")
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()}
    assert rows["signjoey"] == "neccam/slt" and rows["gfslt-vlp"] == "zhoubenjia/GFSLT-VLP"


def test_unknown_formats_and_splits_are_named(prepared_phoenix, tmp_path):
    unknown = prep("export", "--format", "nope", "--out", prepared_phoenix, "--to", tmp_path / "x")
    assert unknown.exit_code == 1 and "unknown export format 'nope'" in unknown.output
    assert "signjoey" in unknown.output
    args = ["export", "--format", "signjoey", "--out", prepared_phoenix, "--to", tmp_path / "y"]
    split = prep(*args, "--splits", "train,val")
    assert split.exit_code == 1 and "--splits val: not in the manifest" in split.output
    missing = prep("export", "--format", "signjoey", "--out", tmp_path, "--to", tmp_path / "z")
    assert missing.exit_code == 1 and "no manifest under" in missing.output


def test_an_interrupted_export_resumes_after_its_last_finished_split(
    prepared_phoenix, tmp_path, monkeypatch
):
    reference, target = tmp_path / "reference", tmp_path / "resumed"
    args = ["export", "--format", "signjoey", "--out", prepared_phoenix]
    assert prep(*args, "--to", reference).exit_code == 0
    original = SignJoeyExporter.export_split
    calls = []

    def dies_on_dev(self, split):
        calls.append(split)
        if split == "dev":
            raise KeyboardInterrupt
        return original(self, split)

    monkeypatch.setattr(SignJoeyExporter, "export_split", dies_on_dev)
    assert prep(*args, "--to", target).exit_code != 0
    record = json.loads((target / ".prep-export.json").read_text())
    assert record["done"]["splits"] == ["train"] and not record["complete"]
    calls.clear()
    assert prep(*args, "--to", target).exit_code != 0  # dies again, but train is not redone
    assert calls == ["dev"]
    monkeypatch.setattr(SignJoeyExporter, "export_split", original)
    assert prep(*args, "--to", target).exit_code == 0
    for path in sorted(reference.glob("phoenix14t.*")):
        assert path.read_bytes() == (target / path.name).read_bytes(), path.name
    assert json.loads((target / ".prep-export.json").read_text())["complete"]


def test_export_md_links_only_what_names_a_repository():
    assert trainer_link("neccam/slt") == "[neccam/slt](https://github.com/neccam/slt)"
    assert trainer_link("https://git.lab.example/slt") == "<https://git.lab.example/slt>"
    assert trainer_link("our in-house trainer") == "our in-house trainer"
