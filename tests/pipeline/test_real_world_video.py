"""Videos as they come from phones, yt-dlp and old archives, read as ``ffmpeg`` shows them:
B-frames in Matroska and AVI, 10-bit HEVC, display matrices (phone clips turned or mirrored), a
file with two video streams, segments cut at [start, end) on a variable frame rate, and WLASL's
and How2Sign's own ways of naming a segment, each through the CLI, each frame compared with
ffmpeg's decode of the same file.

Frames are seeded noise, so two different frames can never pass for each other.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import synthetic
from pipeline.shards import iter_tar_samples
from pipeline.video_file import VideoFileSource
from stages.features.sample import FrameJpegs
from tests.conftest import debian_tool, manifest_rows, prep, quarantine_rows, run_generic
from tests.corpora import how2sign, wlasl

WIDTH, HEIGHT = 64, 48
COUNT = 20
ROTATIONS = {  # display matrices (16.16 fixed point), as phones and ffmpeg write them
    "rotate90": (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30),
    "rotate180": (-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30),
    "rotate270": (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30),
    "hflip": (-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30),
}


def ffmpeg() -> str:
    return debian_tool(("ffmpeg",), "ffmpeg")


def noise(count: int, seed: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size[1], size[0], 3), dtype=np.uint8)


def encode(path: Path, frames: np.ndarray, *codec: str, rate: str = "25") -> Path:
    """``frames`` encoded by ffmpeg itself (x264's default B-frames, or what ``codec`` says)."""
    height, width = frames.shape[1:3]
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", rate]
    command = [ffmpeg(), "-loglevel", "error", "-y", *raw, "-i", "-"]
    command += list(codec or ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1"))
    subprocess.run([*command, str(path)], input=frames.tobytes(), check=True)
    return path


def with_display_matrix(source: Path, target: Path, matrix: tuple[int, ...]) -> Path:
    """``source``'s packets remuxed under a display matrix, as a phone stores a turned clip."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        stream.set_display_matrix(list(matrix))
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


def ffmpeg_frames(path: Path, *filters: str) -> np.ndarray:
    """ffmpeg's decode, displayed (autorotated) and in rgb24: every frame the stream presents,
    flat (its shape is what the test says ffmpeg shows: see :func:`shaped`)."""
    command = [ffmpeg(), "-loglevel", "error", "-i", str(path)]
    command += ["-vf", ",".join(filters)] if filters else []
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8)


def shaped(raw: np.ndarray, width: int, height: int) -> np.ndarray:
    return raw.reshape(-1, height, width, 3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """One clip per real-world class, in a generic CSV."""
    folder = tmp_path_factory.mktemp("real_world")
    clips = folder / "clips"
    clips.mkdir()
    frames = noise(COUNT, 0)
    encode(clips / "bframes_mkv.mkv", frames)  # yt-dlp's merged download: h264, B-frames
    encode(clips / "bframes_avi.avi", frames)
    encode(
        clips / "hevc10.mkv",
        frames,
        *("-c:v", "libx265", "-pix_fmt", "yuv420p10le"),
        *("-x265-params", "log-level=error:pools=1:frame-threads=1"),
    )
    plain = encode(folder / "plain.mp4", frames)
    for name, matrix in ROTATIONS.items():
        with_display_matrix(plain, clips / f"{name}.mp4", matrix)
    small, large = noise(COUNT, 1), noise(COUNT, 2, (160, 120))
    (folder / "small.rgb").write_bytes(small.tobytes())
    (folder / "large.rgb").write_bytes(large.tobytes())
    for name, large_default in (("two_streams.mp4", "default"), ("small_default.mkv", "0")):
        inputs = []
        for raw, size in (("small.rgb", "64x48"), ("large.rgb", "160x120")):
            inputs += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", size, "-r", "25"]
            inputs += ["-i", str(folder / raw)]
        subprocess.run(
            [ffmpeg(), "-loglevel", "error", "-y", *inputs, "-map", "0", "-map", "1"]
            + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1"]
            + ["-disposition:v:0", "default", "-disposition:v:1", large_default]
            + [str(clips / name)],
            check=True,
        )
    rows = ["id,path,text,language,split"]
    rows += [f"{p.stem},clips/{p.name},ein satz,de,train" for p in sorted(clips.iterdir())]
    (folder / "corpus.csv").write_text("\n".join(rows) + "\n")
    return folder


def clip(corpus: Path, name: str) -> Path:
    return next((corpus / "clips").glob(f"{name}.*"))


DISPLAYED = {  # id: (width, height, stream) as ffmpeg shows the clip
    "bframes_mkv": (WIDTH, HEIGHT, 0),
    "bframes_avi": (WIDTH, HEIGHT, 0),
    "hevc10": (WIDTH, HEIGHT, 0),
    "rotate90": (HEIGHT, WIDTH, 0),
    "rotate180": (WIDTH, HEIGHT, 0),
    "rotate270": (HEIGHT, WIDTH, 0),
    "hflip": (WIDTH, HEIGHT, 0),
    "two_streams": (160, 120, 1),  # both marked default: the larger picture
    "small_default": (WIDTH, HEIGHT, 0),  # only the small one marked default: ffmpeg takes it
}


@pytest.mark.parametrize("name", DISPLAYED)
def test_every_frame_is_ffmpegs(corpus, name):
    path = clip(corpus, name)
    width, height, stream = DISPLAYED[name]
    expected = shaped(ffmpeg_frames(path), width, height)
    source = VideoFileSource(path)
    assert (source.width, source.height, source.stream_index) == (width, height, stream)
    assert source.num_frames == len(expected) == COUNT
    np.testing.assert_array_equal(source.read(range(COUNT)), expected)
    np.testing.assert_array_equal(VideoFileSource(path).read([3, 11, 19]), expected[[3, 11, 19]])


def test_turned_clips_are_the_unturned_frames_turned(corpus):
    """The display matrix turns the picture the way ffmpeg's autorotate does (counter-clockwise
    for 90 as phones write it): checked against the unturned clip, not only against ffmpeg."""
    plain = shaped(ffmpeg_frames(clip(corpus, "bframes_mkv")), WIDTH, HEIGHT)
    turned = {
        "rotate90": np.rot90(plain, 1, axes=(1, 2)),
        "rotate180": np.rot90(plain, 2, axes=(1, 2)),
        "rotate270": np.rot90(plain, 3, axes=(1, 2)),
        "hflip": plain[:, :, ::-1],
    }
    for name, frames in turned.items():
        source = VideoFileSource(clip(corpus, name))
        np.testing.assert_array_equal(source.read(range(COUNT)), frames)


def test_the_cli_stores_ffmpegs_frames_of_every_class(corpus, tmp_path, tiny_dinov2):
    out, csv, size = tmp_path / "out", corpus / "corpus.csv", 32
    result = run_generic("manifest", csv, out, "--frame-step", 4)
    assert result.exit_code == 0, result.output
    assert not (out / "manifest" / "quarantine.parquet").exists() or not quarantine_rows(out)
    rows = {r["id"]: r for r in manifest_rows(out, "train")}
    for name, (width, height, stream) in DISPLAYED.items():
        row = rows[name]
        assert (row["width"], row["height"], row["video_stream"]) == (width, height, stream)
        assert row["num_frames"] == COUNT and row["frame_timing"] == "constant", name
    assert rows["hevc10"]["codec"] == "hevc"
    flags = ("--dinov2", tiny_dinov2, "--with-frames", "--frame-size", size, "--frame-step", 4)
    result = run_generic("features", csv, out, *flags)
    assert result.exit_code == 0, result.output
    samples = {
        k: f for tar in (out / "shards" / "train").glob("*.tar") for k, f in iter_tar_samples(tar)
    }
    assert set(samples) == set(rows)
    for name, row in rows.items():
        frames = shaped(ffmpeg_frames(corpus / row["source_path"]), row["width"], row["height"])
        picked = np.arange(0, COUNT, 4)
        fields = samples[name]
        stored = [fields[k] for k in sorted(k for k in fields if k.startswith("frame_"))]
        meta = json.loads(fields["json"])
        assert meta["frame_indices"] == picked.tolist(), (name, meta)
        assert stored == FrameJpegs(size)(frames[picked]), name


def test_a_segment_keeps_the_frames_presented_in_start_to_end(tmp_path):
    """A variable frame rate with a start between two frames: ffmpeg's trim keeps the frames
    from the first one at or after start, none shown before it, and none at end."""
    folder = tmp_path / "corpus"
    (folder / "clips").mkdir(parents=True)
    durations = [0.04] * 10 + [0.1] * 10  # frames at 0, 0.04, ... 0.36, 0.40, 0.50, ... 1.30
    path = folder / "clips" / "vfr.mkv"
    times = np.concatenate([[0], np.cumsum(durations)[:-1]])
    concat = folder / "frames.txt"
    images = noise(COUNT, 3)
    lines = []
    for number, (image, duration) in enumerate(zip(images, durations)):
        png = folder / f"{number:02d}.png"
        av.VideoFrame.from_ndarray(image, format="rgb24").save(str(png))
        lines += [f"file '{png}'", f"duration {duration}"]
    concat.write_text("\n".join(lines + [f"file '{png}'"]) + "\n")
    subprocess.run(
        [ffmpeg(), "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(concat)]
        + ["-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1"]
        + [str(path)],
        check=True,
    )
    start, end = 0.38, 0.75  # between frames 9 (0.36) and 10 (0.40); frame 13 is at 0.70
    (folder / "corpus.csv").write_text(
        f"id,path,text,language,split,start,end\nvfr,clips/vfr.mkv,ein satz,de,train,{start},{end}\n"
    )
    out = tmp_path / "out"
    result = run_generic("manifest", folder / "corpus.csv", out)
    assert result.exit_code == 0, result.output
    [row] = manifest_rows(out, "train")
    expected = shaped(ffmpeg_frames(path, f"trim=start={start}:end={end}"), WIDTH, HEIGHT)
    first = int(np.searchsorted(times, start))
    assert (len(expected), first, row["num_frames"]) == (4, 10, 4)  # frames 10-13
    source = VideoFileSource(path, None, row["start"], row["end"])
    np.testing.assert_array_equal(source.read(range(source.num_frames)), expected)


def test_wlasl_frame_numbers_count_frames_not_25fps_seconds(tmp_path):
    """Frames 5..20 of a 29.97 fps video are 16 frames, as preprocess.py slices them."""
    instance = wlasl.Instance("book", "00042", "train", "http://aslpro.com/b.swf", 5, 20, 24)
    root = wlasl.write_wlasl(tmp_path / "corpus", [instance])
    kit = root / "start_kit"
    video = kit / "videos" / "00042.mp4"
    frames = np.stack(list(wlasl.stamped_frames(range(24), "00042")))  # numbers up to 23 fit
    synthetic.write_h264(video, iter(frames), 30000 / 1001)
    for folder in ("raw_videos", "raw_videos_mp4"):
        shutil.copy(video, kit / folder / video.name)
    out = tmp_path / "out"
    result = prep(
        "run", "--stage", "manifest", "--dataset", "wlasl", "--root", root, "--out", out, "--quiet"
    )
    assert result.exit_code == 0, result.output
    [row] = manifest_rows(out, "train")
    assert row["num_frames"] == 16
    expected = shaped(ffmpeg_frames(video), *wlasl.SIZE)[4:20]
    source = VideoFileSource(video, None, row["start"], row["end"])
    decoded = source.read(range(source.num_frames))
    np.testing.assert_array_equal(decoded, expected)
    assert [wlasl.frame_number(frame) for frame in decoded] == list(range(4, 20))


def test_how2sign_times_between_frames_keep_start_to_end(tmp_path):
    """How2Sign publishes no script that cut its clips: a full video is cut at [start, end) as
    ffmpeg's trim cuts it, never from the frame nearest start."""
    root = how2sign.write_how2sign(tmp_path / "corpus", clips=False)
    sentence = how2sign.Sentence("train", "-fZc293MpJk", 0, 0.27, 1.23, "Hi there.")
    annotation = how2sign.annotation_file(root, "train")
    annotation.write_text(f"{how2sign.HEADER}\n{sentence.line()}\n")
    out = tmp_path / "out"
    result = prep(
        "run", "--stage", "manifest", "--dataset", "how2sign", "--root", root, "--out", out
    )
    assert result.exit_code == 0, result.output
    [row] = manifest_rows(out, "train")
    video = root / row["source_path"]
    expected = shaped(ffmpeg_frames(video, "trim=start=0.27:end=1.23"), *how2sign.SIZE)
    assert row["num_frames"] == len(expected) == 23  # frames 7..29 at 24 fps
    source = VideoFileSource(video, None, row["start"], row["end"])
    np.testing.assert_array_equal(source.read(range(source.num_frames)), expected)
