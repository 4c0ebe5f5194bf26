"""Ingest of the official Phoenix14T and CSL-Daily layouts and of generic CSV/JSONL corpora."""

import csv
import json
import shutil
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import synthetic
from pipeline.manifest import read_provenance
from stages.manifest.text import TEXT_NORMALISATION
from tests.conftest import (
    HAND_CLIP_FPS,
    manifest_rows,
    phoenix_samples,
    prep,
    quarantine_rows,
    run_generic,
)


def test_phoenix14t_release_layout(phoenix_root, tmp_path):
    out = tmp_path / "out"
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "phoenix14t",
        "--root",
        phoenix_root,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "dev" in result.stdout and "release has 519" in result.stdout
    expected = phoenix_samples(40, 12)
    rows = {r["id"]: r for split in ("train", "dev", "test") for r in manifest_rows(out, split)}
    assert len(rows) == 40 and quarantine_rows(out) == []
    for sample in expected:
        row = rows[sample.name]
        assert (row["split"], row["num_frames"], row["fps"]) == (
            sample.split,
            sample.num_frames,
            25.0,
        )
        assert (row["width"], row["height"], row["source_kind"]) == (42, 52, "frames")
        assert row["translation"] == sample.translation and row["gloss"] == sample.gloss
        assert row["language"] == "de" and row["signer"] == sample.signer
        assert row["source_path"] == f"features/fullFrame-210x260px/{sample.split}/{sample.name}"
        assert len(row["fingerprint"]) == 64
    meta = read_provenance(out / "manifest" / "dev.parquet")
    assert meta["stage"] == "manifest" and meta["options"]["unit_size"] == 200
    assert meta["frame_selection"] == {"step": 1, "max_frames": None, "sampling": "uniform"}


def test_phoenix14t_real_sentences_reach_the_manifest_verbatim(phoenix_dev_csv, tmp_path):
    expected = synthetic.samples_from_file(phoenix_dev_csv, clips=60, max_frames=2)
    root = synthetic.write_phoenix14t(tmp_path / "corpus", expected, size=(8, 10))
    out = tmp_path / "out"
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
    rows = {r["id"]: r for split in ("train", "dev", "test") for r in manifest_rows(out, split)}
    assert len(rows) == 60 and quarantine_rows(out) == []
    for sample in expected:
        assert (rows[sample.name]["translation"], rows[sample.name]["gloss"]) == (
            sample.translation,
            sample.gloss,
        )


def test_phoenix_inner_folder_stray_file_and_video_column_folder(phoenix_root, tmp_path):
    inner = phoenix_root / "PHOENIX-2014-T"
    frames = inner / "features" / "fullFrame-210x260px" / "dev"
    first = sorted(p for p in frames.iterdir())[0]
    (first / "desktop.ini").write_text("[junk]")  # a stray non-image file among the frames
    second = sorted(p for p in frames.iterdir())[1]
    nested = second / "1"  # the layout the 'video' column describes: <name>/1/*.png
    nested.mkdir()
    for png in second.glob("*.png"):
        shutil.move(png, nested / png.name)
    out = tmp_path / "out"
    result = prep(
        "run", "--stage", "manifest", "--dataset", "phoenix14t", "--root", inner, "--out", out
    )
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in manifest_rows(out, "dev")}
    assert rows[first.name]["num_frames"] == len(list(first.glob("*.png")))
    assert rows[second.name]["source_path"].endswith(f"{second.name}/1")
    assert rows[second.name]["num_frames"] == len(list(nested.glob("*.png")))


def test_official_layouts_enter_text_in_normal_form(tmp_path):
    """Phoenix14T's CSVs and CSL-Daily's pickle take the normal form every reader's text takes:
    NFC, no soft hyphens or zero-width characters, half-width digits in Chinese."""
    german = [
        replace(
            sample,
            translation=unicodedata.normalize("NFD", "im süden schnee\u00adfall re\u200bgen"),
            gloss="SUED\u200b SCHNEE",
        )
        for sample in phoenix_samples(2, 2)
    ]
    root = synthetic.write_phoenix14t(tmp_path / "phoenix", german, size=(8, 10))
    out = tmp_path / "out_phoenix"
    result = prep(*result_args("phoenix14t", root, out))
    assert result.exit_code == 0, result.output
    rows = [r for split in ("train", "dev", "test") for r in manifest_rows_if_any(out, split)]
    assert {(r["translation"], r["gloss"]) for r in rows} == {
        ("im süden schneefall regen", "SUED SCHNEE")
    }
    meta = read_provenance(out / "manifest" / f"{rows[0]['split']}.parquet")
    assert meta["text_normalisation"] == TEXT_NORMALISATION
    chinese = [
        replace(sample, translation="今天有１２３个人，很好")
        for sample in synthetic.default_samples("zh", clips=2, frames=(2, 2))
    ]
    root = synthetic.write_csl_daily(tmp_path / "csl", chinese, size=(8, 8))
    out = tmp_path / "out_csl"
    result = prep(*result_args("csl-daily", root, out))
    assert result.exit_code == 0, result.output
    rows = [r for split in ("train", "dev", "test") for r in manifest_rows_if_any(out, split)]
    assert {r["translation"] for r in rows} == {"今天有123个人，很好"}


def result_args(dataset: str, root: Path, out: Path) -> list:
    return ["run", "--stage", "manifest", "--dataset", dataset, "--root", root, "--out", out]


def manifest_rows_if_any(out: Path, split: str) -> list[dict]:
    return manifest_rows(out, split) if (out / "manifest" / f"{split}.parquet").is_file() else []


def test_csl_daily_layout_known_defect_and_nested_frames(csl_root, tmp_path):
    labels = csl_root / "sentence_label"
    frames = csl_root / "sentence" / "frames_512x512"
    # the known defect of the release: a labelled sample without frames
    shutil.rmtree(frames / "synth00002")
    split_file = labels / "split_1.txt"
    split_file.write_text(split_file.read_text().replace("synth00002|", "S000005_P0004_T00|"))
    import pickle

    data = pickle.loads((labels / "csl2020ct_v2.pkl").read_bytes())
    data["info"][2]["name"] = "S000005_P0004_T00"
    (labels / "csl2020ct_v2.pkl").write_bytes(pickle.dumps(data))
    # some copies nest the frame folders one level deeper
    nested = frames / "sentence_frames-512x512"
    nested.mkdir()
    for folder in list(frames.iterdir()):
        if folder != nested:
            shutil.move(folder, nested / folder.name)
    out = tmp_path / "out"
    result = prep(
        "run", "--stage", "manifest", "--dataset", "csl-daily", "--root", csl_root, "--out", out
    )
    assert result.exit_code == 0, result.output
    train = manifest_rows(out, "train")
    entry = data["info"][0]
    row = next(r for r in train if r["id"] == entry["name"])
    assert row["translation"] == "".join(entry["label_char"]) and row["language"] == "zh"
    assert row["num_frames"] == entry["length"] and row["fps"] == 30.0
    assert row["gloss"] == " ".join(entry["label_gloss"])
    (bad,) = quarantine_rows(out)
    assert bad["id"] == "S000005_P0004_T00" and bad["reason"] == "missing_frames"
    assert "known defect" in bad["detail"]
    assert "missing_frames 1" in result.stdout


def test_generic_csv_of_videos_with_h264_clip_and_segments(tmp_path, hand_clip):
    folder = tmp_path / "corpus"
    (folder / "videos").mkdir(parents=True)
    shutil.copy(hand_clip, folder / "videos" / "long.mp4")
    rows = [
        {
            "id": "whole",
            "path": "videos/long.mp4",
            "text": "a raised hand",
            "language": "en",
            "split": "train",
        },
        {
            "id": "seg_a",
            "path": "videos/long.mp4",
            "text": "first part",
            "language": "en",
            "split": "train",
            "start": "0.0",
            "end": "1.0",
        },
        {
            "id": "seg_b",
            "path": str(folder / "videos" / "long.mp4"),
            "text": "second part",
            "language": "en",
            "split": "test",
            "start": "1.0",
            "end": "1.9",
            "signer": "s1",
            "fps": "",
        },
    ]
    with open(folder / "corpus.csv", "w", newline="") as handle:
        writer = csv.DictWriter(
            handle,
            fieldnames=["id", "path", "text", "language", "split", "start", "end", "signer", "fps"],
        )
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "generic",
        "--root",
        folder / "corpus.csv",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    train = {r["id"]: r for r in manifest_rows(out, "train")}
    assert train["whole"]["num_frames"] == 58 and train["whole"]["fps"] == pytest.approx(
        float(HAND_CLIP_FPS), abs=1e-3
    )
    assert (train["whole"]["width"], train["whole"]["height"]) == (540, 720)
    assert (
        train["seg_a"]["num_frames"] == 30
        and train["seg_a"]["start"] == 0.0
        and train["seg_a"]["end"] == 1.0
    )
    (seg_b,) = manifest_rows(out, "test")
    assert seg_b["num_frames"] == round(1.9 * HAND_CLIP_FPS) - 30 and seg_b["signer"] == "s1"
    assert (
        len({train["whole"]["fingerprint"], train["seg_a"]["fingerprint"], seg_b["fingerprint"]})
        == 3
    )


def test_generic_jsonl_with_frame_folder(tmp_path, generic_csv):
    frames = tmp_path / "frames" / "clip7"
    frames.mkdir(parents=True)
    import cv2

    for i, frame in enumerate(synthetic.render_frames(9, 32, 24, "f")):
        cv2.imwrite(str(frames / f"{i:06d}.jpg"), frame)
    jsonl = tmp_path / "corpus.jsonl"
    records = [
        {
            "id": "clip7",
            "path": "frames/clip7",
            "text": "hallo welt",
            "language": "de",
            "split": "dev",
            "fps": 24,
        },
        {
            "id": "vid0",
            "path": str(generic_csv.parent / "clips" / "synth00000.mp4"),
            "text": "x",
            "language": "de",
            "split": "dev",
        },
    ]
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "out"
    result = prep(
        "run", "--stage", "manifest", "--dataset", "generic", "--root", jsonl, "--out", out
    )
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in manifest_rows(out, "dev")}
    assert (rows["clip7"]["source_kind"], rows["clip7"]["num_frames"], rows["clip7"]["fps"]) == (
        "frames",
        9,
        24.0,
    )
    assert rows["vid0"]["source_kind"] == "video" and rows["vid0"]["fps"] == 25.0


def test_synth_and_generic_csv_via_cli(tmp_path, tiny_dinov2):
    result = prep(
        "synth", "--layout", "generic", "--out", tmp_path / "g", "--clips", "4", "--frames", "6:8"
    )
    assert result.exit_code == 0, result.output
    root = result.stdout.strip().splitlines()[-1]
    out = tmp_path / "out"
    result = run_generic("all", root, out, "--dinov2", tiny_dinov2, "--captioner", "kinematic")
    assert result.exit_code == 0, result.output
    counts = sum(len(manifest_rows(out, s)) for s in ("train", "dev"))
    assert counts == 4


def test_the_same_corpus_in_another_folder_gives_the_same_manifest_bytes(
    tmp_path, generic_csv, tiny_dinov2
):
    moved = Path(shutil.copytree(generic_csv.parent, tmp_path / "elsewhere" / "corpus"))
    out, kept = tmp_path / "out", {}
    for csv_file in (generic_csv, moved / generic_csv.name):
        result = run_generic(
            "all",
            csv_file,
            out,
            "--dinov2",
            tiny_dinov2,
            "--captioner",
            "kinematic",
            "--text-encoder",
            "none",
        )
        assert result.exit_code == 0, result.output
        outputs = [
            p for p in out.glob("*/*") if p.is_file() and p.parent.name != "runs"
        ]  # runs/ records --root
        kept[csv_file] = {p.relative_to(out): p.read_bytes() for p in outputs}
        shutil.rmtree(out)
    first, second = kept.values()
    assert first.keys() == second.keys() and len(first) > 10
    assert [name for name in first if first[name] != second[name]] == []
