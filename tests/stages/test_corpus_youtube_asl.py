"""YouTube-ASL downloads: one sample per caption cut from its video; every download trap is a
quarantine row with its reason, and only an ambiguous root stops the run."""

import shutil

import pytest

from pipeline import manifest as m
from stages.manifest.youtube_asl import json_captions, vtt_captions
from tests.conftest import manifest_rows, prep, quarantine_rows
from tests.corpora.youtube_asl import Cue, Video, default_videos, write_youtube_asl


def run(root, out, *extra):
    return prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "youtube-asl",
        "--root",
        root,
        "--out",
        out,
        "--quiet",
        "--max-quarantine-share",
        1,  # these corpora are mostly traps on purpose
        *extra,
    )


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return write_youtube_asl(tmp_path_factory.mktemp("yt"), default_videos())


def test_captions_become_segments_of_their_videos(downloads, tmp_path):
    result = run(downloads, tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in manifest_rows(tmp_path / "out", "train")}
    # id: (text, start, end, frames at 10 fps, video)
    expected = {
        "-fZc293MpJk-000": ("Hello, my name is Sam.", 0.0, 1.0, 10, "videos/-fZc293MpJk.mp4"),
        "-fZc293MpJk-001": ("I teach ASL online.", 1.0, 2.5, 15, "videos/-fZc293MpJk.mp4"),
        "Ab_3xYz9Q0w-000": ("Thanks & welcome", 0.5, 2.0, 15, "videos/Ab_3xYz9Q0w.webm"),
        "Ab_3xYz9Q0w-001": ("Bye for now", 2.0, 2.8, 8, "videos/Ab_3xYz9Q0w.webm"),
        "zz9Top-4Kq8-001": ("See you soon.", 0.4, 1.6, 12, "videos/zz9Top-4Kq8.mkv"),
    }
    assert set(rows) == set(expected)
    for sample, (text, start, end, frames, video) in expected.items():
        row = rows[sample]
        assert (row["translation"], row["num_frames"], row["source_path"]) == (text, frames, video)
        assert row["start"] == pytest.approx(start) and row["end"] == pytest.approx(end)
        assert (row["language"], row["split"], row["gloss"], row["source_id"]) == (
            "en",
            "train",
            None,
            None,
        )
    assert rows["Ab_3xYz9Q0w-000"]["codec"] == "vp9" and rows["zz9Top-4Kq8-001"]["fps"] == 10.0


def test_every_download_trap_is_a_quarantine_row_with_its_reason(downloads, tmp_path):
    result = run(downloads, tmp_path / "out")
    assert result.exit_code == 0, result.output
    found = {q["id"]: (q["reason"], q["detail"]) for q in quarantine_rows(tmp_path / "out")}
    assert {k: v[0] for k, v in found.items()} == {
        "-fZc293MpJk-002": m.EMPTY_TEXT,
        "-fZc293MpJk-003": m.SEGMENT_OUT_OF_RANGE,
        "zz9Top-4Kq8-000": m.INVALID_FIELD,
        "NoVideo_000-000": "video_unavailable",
        "NoVideo_000-001": "video_unavailable",
        "NoCaption00": "no_captions",
        "TwoCaptions": "ambiguous_files",
    }
    assert (
        found["zz9Top-4Kq8-000"][1] == "zz9Top-4Kq8.json entry 0: duration 0, the caption is empty"
    )
    assert "NoVideo_000.json" in found["NoVideo_000-000"][1]
    assert "TwoCaptions.en.vtt and captions/TwoCaptions.json" in found["TwoCaptions"][1]
    for _reason, detail in found.values():
        assert detail and "\n" not in detail
    assert "video_unavailable 2" in result.stdout


def test_splits_csv_maps_val_to_dev_and_quarantines_an_unlisted_video(tmp_path):
    videos = default_videos()[:3] + [Video("Unlisted_00", 1.0, (Cue(0.0, 0.5, "Hi"),))]
    splits = {"-fZc293MpJk": "train", "Ab_3xYz9Q0w": "val", "zz9Top-4Kq8": "test"}
    root = write_youtube_asl(tmp_path / "corpus", videos, splits)
    result = run(root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert [r["id"] for r in manifest_rows(out, "dev")] == ["Ab_3xYz9Q0w-000", "Ab_3xYz9Q0w-001"]
    assert [r["id"] for r in manifest_rows(out, "test")] == ["zz9Top-4Kq8-001"]
    assert {r["id"][:11] for r in manifest_rows(out, "train")} == {"-fZc293MpJk"}
    unlisted = next(q for q in quarantine_rows(out) if q["id"] == "Unlisted_00")
    assert unlisted["reason"] == m.UNKNOWN_SPLIT and "splits.csv" in unlisted["detail"]


@pytest.mark.parametrize(
    "content, problem",
    [
        ("yid,split\n-fZc293MpJk\n", "splits.csv line 2: expected yid,split"),
        ("-fZc293MpJk,train\n-fZc293MpJk,test\n", "-fZc293MpJk is also in split train"),
    ],
)
def test_a_broken_splits_csv_is_one_error_line(tmp_path, content, problem):
    root = write_youtube_asl(tmp_path / "corpus", default_videos()[:1])
    (root / "splits.csv").write_text(content)
    result = run(root, tmp_path / "out")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("prep: error: ") and problem in line


def test_a_video_under_root_twice_is_one_error_line(tmp_path):
    root = write_youtube_asl(tmp_path / "corpus", default_videos()[:1])
    (root / "again").mkdir()
    shutil.copy(root / "videos" / "-fZc293MpJk.mp4", root / "again")
    result = run(root, tmp_path / "out")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "prep: error: -fZc293MpJk.mp4 is under --root twice "
        "(again/-fZc293MpJk.mp4 and videos/-fZc293MpJk.mp4); keep one"
    )


def test_a_root_without_downloads_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "youtube_asl_video_ids.txt").write_text("-fZc293MpJk\n")
    result = run(tmp_path / "empty", tmp_path / "out")
    assert result.exit_code == 1 and "layout not recognised" in result.stderr


def test_webvtt_subset_youtube_writes(tmp_path):
    path = tmp_path / "-fZc293MpJk.en.vtt"
    path.write_bytes(
        b"\xef\xbb\xbfWEBVTT - made by hand\r\n\r\nSTYLE\r\n::cue { color: lime }\r\n\r\n"
        b"1\r\n01:02.500 --> 01:04.000 line:90%\r\n<v Sam>Two</v>\r\nlines &lt;3\r\n\r\n"
        b"01:00:00.000 --> 01:00:01.250\r\nan hour in\r\n\r\n"
        b"00:05.000 --> 00:04.000\r\nbackwards\r\n\r\n"
        b"00:06.000 -> 00:07.000\r\nno arrow\r\n\r\n"
        b"00:08.000 --> 00:09.000\r\ncaf\xe9\r\n"
    )
    captions = vtt_captions(path)
    assert [(c.start, c.end, c.text) for c in captions[:2]] == [
        (62.5, 64.0, "Two lines <3"),
        (3600.0, 3601.25, "an hour in"),
    ]
    problems = [c.problem for c in captions[2:]]
    assert problems == [
        (m.INVALID_FIELD, f"{path.name} line 14: end is not after start"),
        (m.INVALID_FIELD, f"{path.name} line 17: no cue timing"),
        (m.UNDECODABLE_TEXT, f"{path.name} line 20: invalid UTF-8"),
    ]
    path.write_text("1\n00:00.000 --> 00:01.000\nno header\n")
    assert vtt_captions(path) == (m.INVALID_FIELD, f"{path.name} does not start with WEBVTT")


def test_transcript_json_that_is_not_a_caption_list(tmp_path):
    path = tmp_path / "-fZc293MpJk.json"
    for content, problem in [
        ("{not json", "is not valid JSON"),
        ('{"text": "a"}', "is not a list of {text, start, duration}"),
    ]:
        path.write_text(content)
        assert json_captions(path) == (m.INVALID_FIELD, f"{path.name} {problem}")
    path.write_text('[{"text": "a", "start": "0", "duration": 1}, {"start": 0, "duration": 1}]')
    assert [c.problem for c in json_captions(path)] == [
        (m.INVALID_FIELD, f"{path.name} entry 0: start='0' is invalid"),
        (m.INVALID_FIELD, f"{path.name} entry 1 has no text"),
    ]
