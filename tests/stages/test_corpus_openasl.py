"""OpenASL through ``prep run --stage manifest --dataset openasl``: the clips, or the full videos
cut by the rows' times, ids made safe and reversible with the ``vid`` kept verbatim, ``valid``
read as ``dev``, and every trap of the release as a quarantine row with its reason."""

from __future__ import annotations

import json
import shutil

import manifests
from pipeline import manifest as m
from pipeline.manifest import VIDEO_UNAVAILABLE
from stages.manifest.openasl import read_openasl, sample_id, vid_of
from tests.conftest import manifest_rows, prep, quarantine_rows
from tests.corpora.openasl import BOX, CLIP_FPS, CLIP_SIZE, RAW_FPS, RAW_SIZE, ROWS, write_openasl

SPLITS = {"train": "train", "valid": "dev", "test": "test"}


def run_openasl(root, out, *extra):
    return prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "openasl",
        "--root",
        root,
        "--out",
        out,
        "--quiet",
        *extra,
    )


def rows_by_id(out) -> dict[str, dict]:
    return {r["id"]: r for split in SPLITS.values() for r in manifest_rows(out, split)}


def test_ids_are_safe_and_read_back_as_the_vid():
    for vid in (
        "1nFdgokPwBw-00:00:14.100-00:00:17.266",
        "-Hx_9kq2LmA-01:02:03.004-01:02:05.000",  # a YouTube id may start with '-' and hold '_'
    ):
        safe = sample_id(vid)
        assert ":" not in safe and vid_of(safe) == vid and sample_id(vid_of(safe)) == safe
    assert (
        sample_id("1nFdgokPwBw-00:00:14.100-00:00:17.266")
        == "1nFdgokPwBw-00.00.14.100-00.00.17.266"
    )
    assert (
        sample_id("plain_id") == vid_of("plain_id") == "plain_id"
    )  # other shapes stay as they are


def test_clips_give_the_raw_text_and_keep_the_vid(tmp_path):
    root = write_openasl(tmp_path)
    out = tmp_path / "out"
    result = run_openasl(root, out)
    assert result.exit_code == 0, result.output
    rows = rows_by_id(out)
    assert len(rows) == len(ROWS) and quarantine_rows(out) == []
    for expected in ROWS:
        row = rows[sample_id(expected.vid)]
        first, stop = expected.frames
        assert (row["source_id"], vid_of(row["id"])) == (expected.vid, expected.vid)
        assert (row["split"], row["translation"], row["language"]) == (
            SPLITS[expected.split],
            expected.text,
            "en",
        )
        assert (row["source_path"], row["start"], row["end"]) == (
            f"video-clip/{expected.vid}.mp4",
            None,
            None,
        )
        assert (row["num_frames"], row["fps"], row["width"], row["height"]) == (
            stop - first,
            CLIP_FPS,
            *CLIP_SIZE,
        )


def test_full_videos_are_cut_by_the_times_and_carry_the_signer_box(tmp_path):
    root = write_openasl(tmp_path, clips=False)
    out = tmp_path / "out"
    result = run_openasl(root, out)
    assert result.exit_code == 0, result.output
    rows = rows_by_id(out)
    for expected in ROWS:
        row = rows[sample_id(expected.vid)]
        first, stop = expected.frames
        assert (row["source_path"], row["start"], row["end"]) == (
            f"raw-video/{expected.yid}.mp4",
            expected.start,
            expected.end,
        )
        assert (row["num_frames"], row["fps"], row["width"], row["height"]) == (
            stop - first,
            RAW_FPS,
            *RAW_SIZE,
        )
    # the box reaches the candidates as ``crop`` (the manifest has no column for it yet)
    _, candidates = read_openasl(root, manifests.load_descriptor("openasl"))
    assert [c["crop"] for c in candidates] == [BOX] * len(ROWS)
    root_with_clips = write_openasl(tmp_path / "with-clips")
    _, candidates = read_openasl(root_with_clips, manifests.load_descriptor("openasl"))
    assert all("crop" not in c for c in candidates)  # a clip is already cropped


def test_a_clip_renamed_without_colons_is_found_and_two_names_are_one_error_line(tmp_path):
    root = write_openasl(tmp_path)
    clip = root / "video-clip" / f"{ROWS[0].vid}.mp4"
    renamed = clip.with_name(f"{ROWS[0].vid.replace(':', '_')}.mp4")
    clip.rename(renamed)
    out = tmp_path / "out"
    result = run_openasl(root, out)
    assert result.exit_code == 0, result.output
    assert rows_by_id(out)[sample_id(ROWS[0].vid)]["source_path"] == f"video-clip/{renamed.name}"
    shutil.copy(renamed, clip)
    result = run_openasl(root, tmp_path / "out2")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"prep: error: the clip of {ROWS[0].vid} is under --root twice "
        f"(video-clip/{clip.name} and video-clip/{renamed.name}); keep one"
    )


def test_every_trap_is_a_quarantine_row_with_its_reason(tmp_path):
    root = write_openasl(tmp_path, clips=False)
    tsv = root / "data" / "openasl-v1.0.tsv"
    yid = ROWS[0].yid
    row = f"{yid}-{{}}-{{}}\t{yid}\t{{}}\t{{}}\tSome text.\tsome text .\t\t{{}}".format
    traps = [
        "Gone0000000-00:00:01.000-00:00:02.000\tGone0000000\t00:00:01.000\t00:00:02.000\tGone.\tgone .\t\ttrain",
        row("00:00:02.000", "00:00:09.000", "00:00:02.000", "00:00:09.000", "train"),
        row("00:00:01.100", "00:00:02.100", "00:00:01.100", "00:00:02.100", "holdout"),
        row("00:00:01.500", "00:00:02.000", "00:00:01.500", "0:0:0:2.0", "test"),
        row("00:00:02.000", "00:00:01.000", "00:00:02.000", "00:00:01.000", "train"),
        f"{yid}-00.00.01.000-00.00.02.000\t{yid}\t00:00:01.000\t00:00:02.000\tDots.\tdots .\t\ttrain",
        row("00:00:00.100", "00:00:00.500", "00:00:00.100", "00:00:00.500", "valid"),
    ]
    tsv.write_text(tsv.read_text() + "\n".join(traps) + "\n")
    boxes = json.loads((root / "data" / "bbox-v1.0.json").read_text())
    boxes[f"{yid}-00:00:00.100-00:00:00.500"] = [0.5, 0.2, 0.4, 0.9]  # x1 before x0
    (root / "data" / "bbox-v1.0.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    result = run_openasl(root, out, "--max-quarantine-share", 1)
    assert result.exit_code == 0, result.output
    found = {(q["id"], q["split"]): (q["reason"], q["detail"]) for q in quarantine_rows(out)}
    line = "openasl-v1.0.tsv line {}".format
    assert found.pop(("Gone0000000-00.00.01.000-00.00.02.000", "train")) == (
        VIDEO_UNAVAILABLE,
        f"{line(6)}: neither Gone0000000-00:00:01.000-00:00:02.000.mp4 nor Gone0000000.mp4 "
        "is under --root",
    )
    assert found.pop((f"{yid}-00.00.02.000-00.00.09.000", "train"))[0] == m.SEGMENT_OUT_OF_RANGE
    assert found.pop((f"{yid}-00.00.01.100-00.00.02.100", "unassigned")) == (
        m.UNKNOWN_SPLIT,
        f"{line(8)}: split 'holdout' is none of train, valid, test",
    )
    assert found.pop((f"{yid}-00.00.01.500-00.00.02.000", "test")) == (
        m.INVALID_FIELD,
        f"{line(9)}: end time '0:0:0:2.0' is not in HH:MM:SS.mmm",
    )
    assert found.pop((f"{yid}-00.00.02.000-00.00.01.000", "train"))[0] == m.INVALID_FIELD
    reason, detail = found.pop((f"{yid}-00.00.01.000-00.00.02.000", "train"))
    assert reason == m.UNSAFE_ID and "has dots where the release writes colons" in detail
    assert found.pop((f"{yid}-00.00.00.100-00.00.00.500", "dev")) == (
        m.INVALID_FIELD,
        f"{line(12)}: bbox of {yid}-00:00:00.100-00:00:00.500 [0.5, 0.2, 0.4, 0.9] "
        "does not have x0 < x1 and y0 < y1",
    )
    assert found == {}
    assert set(rows_by_id(out)) == {sample_id(r.vid) for r in ROWS}


def test_a_root_without_the_annotation_file_is_one_error_line(tmp_path):
    root = write_openasl(tmp_path)
    (root / "data" / "openasl-v1.0.tsv").unlink()
    result = run_openasl(root, tmp_path / "out")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line == f"prep: error: no openasl-v1.0.tsv under {root} (the OpenASL annotation file)"
