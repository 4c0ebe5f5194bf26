"""How2Sign through ``prep run --stage manifest --dataset how2sign``: the sentence clips, or the
full videos cut by the re-aligned times, ``val`` read as ``dev``, and every trap of the release
as a quarantine row with its reason, every good sample still written."""

from __future__ import annotations

import shutil

from pipeline import manifest as m
from pipeline.manifest import VIDEO_UNAVAILABLE
from tests.conftest import manifest_rows, prep, quarantine_rows
from tests.corpora.how2sign import FPS, SIZE, annotation_file, sentences, write_how2sign

SPLITS = {"train": "train", "val": "dev", "test": "test"}


def run_how2sign(root, out, *extra):
    return prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "how2sign",
        "--root",
        root,
        "--out",
        out,
        "--quiet",
        *extra,
    )


def rows_by_id(out) -> dict[str, dict]:
    return {r["id"]: r for split in SPLITS.values() for r in manifest_rows(out, split)}


def test_clips_are_read_and_a_missing_clip_falls_back_to_its_full_video(tmp_path):
    root = write_how2sign(tmp_path)
    expected = sentences()
    fallback = expected[1]
    next(root.rglob(f"{fallback.name}.mp4")).unlink()
    out = tmp_path / "out"
    result = run_how2sign(root, out)
    assert result.exit_code == 0, result.output
    rows = rows_by_id(out)
    assert set(rows) == {s.name for s in expected} and quarantine_rows(out) == []
    for sentence in expected:
        row = rows[sentence.name]
        first, stop = sentence.frames
        assert (row["split"], row["translation"], row["language"]) == (
            SPLITS[sentence.split],
            sentence.text,
            "en",
        )
        assert (row["num_frames"], row["fps"], row["width"], row["height"]) == (
            stop - first,
            FPS,
            *SIZE,
        )
        assert row["source_id"] is None  # SENTENCE_NAME is a safe id as it is
        if sentence is fallback:
            video = f"video_level/train/rgb_front/raw_videos/{sentence.video_name}.mp4"
            assert (row["source_path"], row["start"], row["end"]) == (
                video,
                sentence.start,
                sentence.end,
            )
        else:
            clip = f"sentence_level/{sentence.split}/rgb_front/raw_videos/{sentence.name}.mp4"
            assert (row["source_path"], row["start"], row["end"]) == (clip, None, None)


def test_full_videos_are_cut_by_the_realigned_times(tmp_path):
    root = write_how2sign(tmp_path, clips=False)
    out = tmp_path / "out"
    result = run_how2sign(root, out)
    assert result.exit_code == 0, result.output
    rows = rows_by_id(out)
    for sentence in sentences():
        row = rows[sentence.name]
        first, stop = sentence.frames
        assert row["source_path"].endswith(f"/{sentence.video_name}.mp4")
        assert (row["start"], row["end"], row["num_frames"]) == (
            sentence.start,
            sentence.end,
            round((sentence.end - sentence.start) * FPS),
        )
        assert row["num_frames"] == stop - first and row["split"] == SPLITS[sentence.split]
    shared = [r for r in rows.values() if r["source_path"].endswith("-fZc293MpJk-1-rgb_front.mp4")]
    assert len(shared) == 2 and shared[0]["fingerprint"] != shared[1]["fingerprint"]


def test_every_trap_is_a_quarantine_row_with_its_reason(tmp_path):
    root = write_how2sign(tmp_path, clips=False)
    train = annotation_file(root, "train")
    header, *lines = train.read_bytes().splitlines()
    video = b"-fZc293MpJk\t-fZc293MpJk-1-rgb_front\t-fZc293MpJk_%d\t-fZc293MpJk_%d-1-rgb_front\t"
    traps = [
        b"Gone0000000\tGone0000000-1-rgb_front\tGone0000000_0\tGone0000000_0-1-rgb_front\t1.0\t2.0\tNo video.",
        video % (10, 10) + b"2.5\t9.0\tEnds after the video.",
        video % (11, 11) + b"5.0\t6.0\tStarts after the video.",
        video % (12, 12) + b"2.0\t1.0\tEnds before it starts.",
        video % (13, 13) + b"1.0\tlate\tNot a time.",
        video % (14, 14) + b"1.0\t2.0",  # the sentence column is missing
        video % (15, 15) + b"1.0\t2.0\t   ",
        video % (16, 16) + b"1.0\t2.0\tcaf\xe9 au lait",  # Latin-1: not UTF-8
        lines[0],  # the first sentence again
        video % (17, 17) + b'0.5\t1.0\t"He said ""hi"" twice."',  # quoted by a CSV writer
        video % (18, 18) + b'0.5\t1.0\t"Yes," she said, "go."',  # quotation marks of the text
    ]
    train.write_bytes(b"\n".join([header, *lines, *traps]) + b"\n")
    out = tmp_path / "out"
    result = run_how2sign(root, out, "--max-quarantine-share", 1)
    assert result.exit_code == 0, result.output
    found = {(q["id"], q["split"]): (q["reason"], q["detail"]) for q in quarantine_rows(out)}
    name = "-fZc293MpJk_{}-1-rgb_front".format
    line = f"{train.name} line {{}}".format
    assert found.pop(("Gone0000000_0-1-rgb_front", "train")) == (
        VIDEO_UNAVAILABLE,
        f"{line(6)}: neither Gone0000000_0-1-rgb_front.mp4 nor Gone0000000-1-rgb_front.mp4 "
        "is under --root",
    )
    assert found.pop((name(10), "train"))[0] == m.SEGMENT_OUT_OF_RANGE
    reason, detail = found.pop((name(11), "train"))
    assert reason == m.SEGMENT_OUT_OF_RANGE and "start 5 s is past the video's end" in detail
    assert found.pop((name(12), "train")) == (
        m.INVALID_FIELD,
        f"{line(9)}: end 1 s is not after start 2 s",
    )
    assert found.pop((name(13), "train")) == (
        m.INVALID_FIELD,
        f"{line(10)}: end time 'late' is not in seconds",
    )
    assert found.pop((name(14), "train")) == (
        m.INVALID_FIELD,
        f"{line(11)} has 6 fields, expected 7",
    )
    assert found.pop((name(15), "train"))[0] == m.EMPTY_TEXT
    assert found.pop((name(16), "train")) == (m.UNDECODABLE_TEXT, f"{line(13)} is not valid UTF-8")
    assert found.pop((name(0), "train"))[0] == m.DUPLICATE_ID
    assert found == {}
    rows = rows_by_id(out)
    assert {s.name for s in sentences()} | {name(17), name(18)} == set(rows)
    assert rows[name(17)]["translation"] == 'He said "hi" twice.'
    assert rows[name(18)]["translation"] == '"Yes," she said, "go."'


def test_a_clip_under_root_twice_is_one_error_line(tmp_path):
    root = write_how2sign(tmp_path)
    clip = next(root.rglob("zz9Top-4Kq8_0-1-rgb_front.mp4"))
    (root / "copy").mkdir()
    shutil.copy(clip, root / "copy" / clip.name)
    result = run_how2sign(root, tmp_path / "out")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "prep: error: zz9Top-4Kq8_0-1-rgb_front.mp4 is under --root twice "
        "(copy/zz9Top-4Kq8_0-1-rgb_front.mp4 and "
        "sentence_level/val/rgb_front/raw_videos/zz9Top-4Kq8_0-1-rgb_front.mp4); keep one"
    )


def test_a_root_without_the_realigned_files_or_with_another_header_is_one_error_line(tmp_path):
    root = write_how2sign(tmp_path, clips=False)
    shutil.rmtree(root / "sentence_level")
    result = run_how2sign(root, tmp_path / "out")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "layout not recognised: none of how2sign_realigned_train.csv" in line
    root = write_how2sign(tmp_path / "again", clips=False)
    test = annotation_file(root, "test")
    test.write_text(test.read_text().replace("START_REALIGNED", "START", 1))
    result = run_how2sign(root, tmp_path / "out2")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.endswith("how2sign_realigned_test.csv: header lacks column(s) START_REALIGNED")
