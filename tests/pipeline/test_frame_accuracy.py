"""Every stored frame is the frame it claims to be: prep's frames against ffmpeg's own decode of
the same file, frame by frame, on the stream classes that fool frame-rate arithmetic (edit
lists, timestamps that restart, variable frame rates, AV1), beside a plain clip, through the CLI.

Frames are seeded noise, so two different frames can never pass for each other.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline import manifest as m
from pipeline import synthetic
from pipeline.shards import iter_tar_samples
from pipeline.video import FrameSelection, open_source
from stages.features.sample import FrameJpegs
from tests.conftest import debian_tool, manifest_rows, prep, quarantine_rows, run_generic
from tests.frames import decode_clip

WIDTH, HEIGHT = 64, 48


def ffmpeg() -> str:
    return debian_tool(("ffmpeg",), "ffmpeg")


def noise(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def run_ffmpeg(*args: object) -> None:
    subprocess.run([ffmpeg(), "-loglevel", "error", "-y", *map(str, args)], check=True)


def ffmpeg_frames(path: Path) -> np.ndarray:
    """ffmpeg's decode: every frame the stream presents, none duplicated or dropped."""
    raw = subprocess.run(
        [
            ffmpeg(),
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-fps_mode",
            "passthrough",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)


def ffmpeg_times(path: Path) -> np.ndarray:
    """ffprobe's presentation time of each decoded frame, from the first; where the clock goes
    back (joined files), the later part continues one frame after the earlier one's end."""
    probe = shutil.which("ffprobe") or ffmpeg().replace("ffmpeg", "ffprobe")
    text = subprocess.run(
        [
            probe,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    times = np.array([float(line.split(",")[0]) for line in text.split()])
    step = np.median(np.diff(times)[np.diff(times) > 0])
    for position in range(1, len(times)):
        if times[position] <= times[position - 1]:
            times[position:] += times[position - 1] + step - times[position]
    return times - times[0]


def write_vfr(path: Path, frames: list[np.ndarray], durations_ms: list[int]) -> Path:
    """An h264 mp4 whose frames last ``durations_ms`` each (a variable frame rate)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18", "threads": "1", "bf": "0"}
        pts = 0
        for frame, duration in zip(frames, durations_ms):
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video.pts, video.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(video))
            pts += duration
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """One clip per stream class beside a plain one, in a generic CSV."""
    folder = tmp_path_factory.mktemp("accuracy")
    clips = folder / "clips"
    clips.mkdir()
    synthetic.write_h264(clips / "plain.mp4", iter(noise(40, 0)), 25)
    synthetic.write_h264(folder / "long.mp4", iter(noise(58, 1)), 25)
    run_ffmpeg("-ss", "0.5", "-i", folder / "long.mp4", "-c", "copy", clips / "edit_list.mp4")
    parts = []
    for number, seed in enumerate((2, 3)):
        synthetic.write_h264(folder / f"part{number}.mp4", iter(noise(20, seed)), 25)
        run_ffmpeg(
            "-i",
            folder / f"part{number}.mp4",
            "-c",
            "copy",
            "-f",
            "mpegts",
            folder / f"part{number}.ts",
        )
        parts.append((folder / f"part{number}.ts").read_bytes())
    (clips / "restarts.ts").write_bytes(b"".join(parts))  # joined byte for byte: the clock restarts
    write_vfr(clips / "vfr.mp4", noise(40, 4), [33] * 20 + [100] * 20)
    synthetic.write_h264(folder / "av1_source.mp4", iter(noise(30, 5)), 25)
    run_ffmpeg(
        "-i",
        folder / "av1_source.mp4",
        "-c:v",
        "libaom-av1",
        "-crf",
        "30",
        "-cpu-used",
        "8",
        "-row-mt",
        "0",
        "-threads",
        "1",
        clips / "av1.mp4",
    )
    vfr_times = ffmpeg_times(clips / "vfr.mp4")
    rows = ["id,path,text,language,split,start,end"]
    rows += [
        f"{name},clips/{name}.{'ts' if name == 'restarts' else 'mp4'},ein satz,de,train,,"
        for name in ("plain", "edit_list", "restarts", "vfr", "av1")
    ]
    rows.append(
        f"vfr_segment,clips/vfr.mp4,ein satz,de,train,{vfr_times[15]:.3f},{vfr_times[30]:.3f}"
    )
    rows.append("past_end,clips/plain.mp4,ein satz,de,train,0.5,9.0")
    (folder / "corpus.csv").write_text("\n".join(rows) + "\n")
    return folder


CLASSES = ("plain", "edit_list", "restarts", "vfr", "av1")


@pytest.mark.parametrize("name", CLASSES)
def test_every_frame_and_time_is_ffmpegs(corpus, name):
    path = next((corpus / "clips").glob(f"{name}.*"))
    expected, times = ffmpeg_frames(path), ffmpeg_times(path)
    source = open_source(path)
    assert source.num_frames == len(expected) == len(times)
    np.testing.assert_array_equal(decode_clip(source).frames, expected)
    np.testing.assert_allclose(source.timestamps(range(source.num_frames)), times, atol=1e-3)
    for step in (3, 10):  # sparse selections, read on a fresh source and after a whole pass
        picked = FrameSelection(step=step).indices(len(expected))
        np.testing.assert_array_equal(
            decode_clip(open_source(path), FrameSelection(step=step)).frames, expected[picked]
        )
    last = open_source(path)
    np.testing.assert_array_equal(last.read([last.num_frames - 1])[0], expected[-1])


def test_a_variable_frame_rate_segment_gets_its_own_seconds(corpus):
    path = corpus / "clips" / "vfr.mp4"
    times = ffmpeg_times(path)
    source = open_source(path, start=round(times[15], 3), end=round(times[30], 3))
    assert source.num_frames == 15
    np.testing.assert_array_equal(decode_clip(source).frames, ffmpeg_frames(path)[15:30])
    average = 40 / (times[-1] + 0.1)  # what cutting with the average frame rate would pick
    assert int(round(times[15] * average)) != 15


def test_the_cli_stores_ffmpegs_frames_and_times(corpus, tmp_path, tiny_dinov2):
    out = tmp_path / "out"
    csv = corpus / "corpus.csv"
    result = run_generic("manifest", csv, out, "--frame-step", 3)
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in manifest_rows(out, "train")}
    assert (rows["av1"]["codec"], rows["plain"]["codec"]) == ("av1", "h264")
    assert rows["vfr"]["frame_timing"] == "variable" and rows["plain"]["frame_timing"] == "constant"
    assert rows["restarts"]["frame_timing"] == "restarts" and rows["edit_list"]["num_frames"] == 45
    [(past_end)] = [(q["id"], q["reason"]) for q in quarantine_rows(out)]
    assert past_end == ("past_end", m.SEGMENT_OUT_OF_RANGE)
    size = 32
    result = run_generic(
        "features",
        csv,
        out,
        "--dinov2",
        tiny_dinov2,
        "--with-frames",
        "--frame-size",
        size,
        "--frame-step",
        3,
    )
    assert result.exit_code == 0, result.output
    samples = {
        k: f for tar in (out / "shards" / "train").glob("*.tar") for k, f in iter_tar_samples(tar)
    }
    assert len(samples) == len(CLASSES) + 1
    for name in (*CLASSES, "vfr_segment"):
        fields = samples[name]
        meta = json.loads(fields["json"])
        path = next((corpus / "clips").glob(f"{name.removesuffix('_segment')}.*"))
        frames, times = ffmpeg_frames(path), ffmpeg_times(path)
        if name == "vfr_segment":
            frames, times = frames[15:30], times[15:30] - times[15]
        picked = np.arange(0, len(frames), 3)
        assert meta["frame_indices"] == picked.tolist()
        np.testing.assert_allclose(meta["frame_times"], times[picked], atol=1e-3)
        stored = [fields[k] for k in sorted(k for k in fields if k.startswith("frame_"))]
        assert stored == FrameJpegs(size)(frames[picked]), (
            name
        )  # the same pixels give the same JPEG bytes
    assert prep("verify", "--out", out).exit_code == 0


def test_a_codec_without_a_decoder_is_quarantined_naming_it(corpus, tmp_path, monkeypatch):
    from pipeline import video_file

    real = video_file.has_decoder
    monkeypatch.setattr(video_file, "has_decoder", lambda name: name != "av1" and real(name))
    out = tmp_path / "out"
    result = run_generic("manifest", corpus / "corpus.csv", out, "--max-quarantine-share", 0.5)
    assert result.exit_code == 0, result.output
    found = {q["id"]: (q["reason"], q["detail"]) for q in quarantine_rows(out)}
    assert found["av1"] == (m.UNSUPPORTED_CODEC, "no decoder for the av1 codec of av1.mp4")
    assert "plain" in {r["id"] for r in manifest_rows(out, "train")}


def test_sparse_reads_of_a_long_clip_seek_and_still_get_ffmpegs_frames(tmp_path):
    """300 frames with a keyframe every 25 and B-frames: a selection every 100 frames seeks
    between keyframes instead of decoding everything, and a segment starts mid-GOP."""
    import av

    path = tmp_path / "long_gop.mp4"
    frames = noise(300, 7)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18", "threads": "1", "g": "25", "bf": "2", "sc_threshold": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    expected = ffmpeg_frames(path)
    assert len(expected) == 300
    picked = FrameSelection(step=100).indices(300)
    source = open_source(path)
    np.testing.assert_array_equal(
        decode_clip(source, FrameSelection(step=100)).frames, expected[picked]
    )
    segment = open_source(path, start=5.52, end=7.0)  # frames 138-174: starts inside a GOP
    np.testing.assert_array_equal(decode_clip(segment).frames, expected[138:175])
    np.testing.assert_array_equal(segment.read([0, 36]), expected[[138, 174]])


def test_caption_chunks_of_a_variable_frame_rate_clip_carry_real_seconds(corpus, tmp_path):
    import pyarrow.parquet as pq

    folder = tmp_path / "vfr"
    (folder / "clips").mkdir(parents=True)
    shutil.copy(corpus / "clips" / "vfr.mp4", folder / "clips" / "vfr.mp4")
    (folder / "corpus.csv").write_text(
        "id,path,text,language,split\nvfr,clips/vfr.mp4,ein satz,de,train\n"
    )
    out = tmp_path / "out"
    result = prep(
        "run",
        "--stage",
        "hand-captions",
        "--dataset",
        "generic",
        "--root",
        folder / "corpus.csv",
        "--out",
        out,
        "--quiet",
        "--captioner",
        "kinematic",
        "--text-encoder",
        "none",
    )
    assert result.exit_code == 0, result.output
    chunks = pq.read_table(out / "hand-captions" / "train.chunks.parquet").to_pylist()
    times = ffmpeg_times(corpus / "clips" / "vfr.mp4")
    assert [(c["start_frame"], c["end_frame"]) for c in chunks] == [(0, 16), (16, 40)]
    assert [c["start_s"] for c in chunks] == [0.0, round(times[16], 3)]
    assert chunks[-1]["end_s"] == pytest.approx(
        times[-1] + 0.1, abs=2e-3
    )  # the last frame lasts 100 ms
