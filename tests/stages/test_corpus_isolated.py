"""Isolated-sign corpora, WLASL and AUTSL, in their released layouts: the class name is the
text, frame numbers select exactly their frames, every trap is a quarantine row with its reason."""

import shutil

import pytest

from pipeline import manifest as m
from pipeline.video_file import VideoFileSource
from tests.conftest import manifest_rows, prep, quarantine_rows
from tests.corpora import autsl, wlasl


def run(dataset, root, out):
    return prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        dataset,
        "--root",
        root,
        "--out",
        out,
        "--quiet",
        "--max-quarantine-share",
        1,  # these corpora are mostly traps on purpose
    )


def all_rows(out):
    return {r["id"]: r for split in ("train", "dev", "test") for r in manifest_rows(out, split)}


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("prep: error: ")
    return line


@pytest.fixture(scope="module")
def wlasl_root(tmp_path_factory):
    return wlasl.write_wlasl(tmp_path_factory.mktemp("wlasl"), wlasl.default_instances())


@pytest.fixture(scope="module")
def wlasl_out(wlasl_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("wlasl-out")
    result = run("wlasl", wlasl_root, out)
    assert result.exit_code == 0, result.output
    return out


def test_wlasl_instances_select_exactly_frame_start_to_frame_end(wlasl_root, wlasl_out):
    rows = all_rows(wlasl_out)
    # id: (split, signer, start, end); frames stored whole when start and end are None
    expected = {
        "00001": ("train", "1", None, None),  # cut by preprocess.py: the file is the sign
        "00002": ("dev", "2", None, None),  # val is dev
        "00003": ("test", "1", 2 / 25, 10 / 25),
        "00004": ("train", "1", None, None),
        "00005": ("train", "1", 3 / 25, None),
    }
    assert set(rows) == set(expected)
    instances = {}
    for inst in wlasl.default_instances():
        instances.setdefault(inst.video_id, inst)  # the first of an id used twice is the sample
    for sample, (split, signer, start, end) in expected.items():
        row, inst = rows[sample], instances[sample]
        assert (row["split"], row["signer"], row["language"]) == (split, signer, "en")
        assert row["translation"] == row["gloss"] == inst.gloss
        assert row["start"] == pytest.approx(start) and row["end"] == pytest.approx(end)
        # the start kit's three copies of a video: the one preprocess.py made is read
        assert row["source_path"] == f"start_kit/videos/{sample}.mp4"
        last = inst.frame_end if inst.frame_end != -1 else inst.frames
        wanted = list(range(inst.frame_start - 1, last))  # frames frame_start..frame_end, from 0
        source = VideoFileSource(wlasl_root / row["source_path"], None, row["start"], row["end"])
        decoded = source.read(list(range(source.num_frames)))
        assert row["num_frames"] == len(wanted)
        assert [wlasl.frame_number(frame) for frame in decoded] == wanted, sample


def test_wlasl_traps_are_quarantine_rows(wlasl_out):
    found = {(q["id"], q["split"]): (q["reason"], q["detail"]) for q in quarantine_rows(wlasl_out)}
    assert {k: v[0] for k, v in found.items()} == {
        ("00006", "train"): "video_unavailable",
        ("00007", "train"): m.INVALID_FIELD,
        ("00002", "test"): m.DUPLICATE_ID,
        ("00009", "train"): m.SEGMENT_OUT_OF_RANGE,
    }
    assert "dead link" in found[("00006", "train")][1]
    assert found[("00007", "train")][1].startswith(
        "WLASL_v0.3.json entry 1 instance 4: frames 9..3"
    )


def test_wlasl_video_twice_outside_the_download_folders_is_one_error_line(tmp_path):
    root = wlasl.write_wlasl(tmp_path / "corpus", wlasl.default_instances()[2:3])
    (root / "backup").mkdir()
    shutil.copy(root / "start_kit" / "videos" / "00003.mp4", root / "backup")
    line = one_error_line(run("wlasl", root, tmp_path / "out"))
    assert line == (
        "prep: error: 00003.mp4 is under --root twice "
        "(backup/00003.mp4 and start_kit/videos/00003.mp4); keep one"
    )


def test_wlasl_without_its_index_file_is_one_error_line(tmp_path):
    root = wlasl.write_wlasl(tmp_path / "corpus", wlasl.default_instances()[2:3])
    (root / "start_kit" / "WLASL_v0.3.json").unlink()
    assert "no WLASL_v0.3.json under" in one_error_line(run("wlasl", root, tmp_path / "out"))


@pytest.fixture
def autsl_root(tmp_path):
    extra = ["signer0_sample4,", "signer0_sample8,1,2"]  # no class id; three fields
    return autsl.write_autsl(tmp_path / "corpus", autsl.default_samples(), extra)


def test_autsl_english_class_name_is_the_text_turkish_the_gloss(autsl_root, tmp_path):
    result = run("autsl", autsl_root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = all_rows(tmp_path / "out")
    names = {i: (tr, en) for i, tr, en in autsl.CLASSES}
    good = [s for s in autsl.default_samples() if s.frames and s.class_id in names]
    assert set(rows) == {s.name for s in good}
    for sample in good:
        row = rows[sample.name]
        assert (row["gloss"], row["translation"]) == names[sample.class_id]
        assert row["split"] == {"train": "train", "val": "dev", "test": "test"}[sample.split]
        assert row["source_path"] == f"{sample.split}/{sample.name}_color.mp4"  # never depth
        assert (row["num_frames"], row["fps"], row["language"]) == (sample.frames, 30.0, "en")
        assert row["signer"] == sample.name.split("_")[0]
    assert rows["signer0_sample2"]["gloss"] == "ağaç"  # Turkish letters verbatim


def test_autsl_traps_are_quarantine_rows(autsl_root, tmp_path):
    (autsl_root / "train" / "signer1_sample5_color.mp4").write_bytes(b"")
    labels = autsl_root / "test_labels.csv"
    labels.write_text("sample,label\n" + labels.read_text())  # a header some copies add
    result = run("autsl", autsl_root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    found = {q["id"]: (q["reason"], q["detail"]) for q in quarantine_rows(tmp_path / "out")}
    assert {k: v[0] for k, v in found.items()} == {
        "signer0_sample3": "video_unavailable",
        "signer1_sample6": m.INVALID_FIELD,
        "signer0_sample4": m.INVALID_FIELD,
        "signer0_sample8": m.INVALID_FIELD,
        "signer1_sample5": m.UNREADABLE_FILE,
    }
    assert (
        found["signer1_sample6"][1] == "train_labels.csv line 5: class 226 is not in the class list"
    )
    assert found["signer0_sample4"][1] == "train_labels.csv line 6 is not sample,class_id"
    assert "signer0_sample3_color.mp4" in found["signer0_sample3"][1]
    assert [r["id"] for r in manifest_rows(tmp_path / "out", "test")] == ["signer5_sample9"]


def test_autsl_two_label_files_for_one_split_is_one_error_line(autsl_root, tmp_path):
    shutil.copy(autsl_root / "validation_labels.csv", autsl_root / "val_labels.csv")
    line = one_error_line(run("autsl", autsl_root, tmp_path / "out"))
    assert line == (
        "prep: error: two label files for split dev: val_labels.csv and validation_labels.csv; "
        "keep one"
    )


def test_autsl_clip_under_root_twice_is_one_error_line(autsl_root, tmp_path):
    shutil.copy(autsl_root / "val" / "signer3_sample7_color.mp4", autsl_root / "train")
    line = one_error_line(run("autsl", autsl_root, tmp_path / "out"))
    assert "signer3_sample7_color.mp4 is under --root twice" in line
