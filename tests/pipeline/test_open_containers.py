"""Segments of one long video reuse its open container (its header is parsed once) and still get
exactly the frames a fresh reader gets; a replaced file, a read from the first frame or a
forked process never gets a kept container."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import open_containers, synthetic
from pipeline.video import FrameSelection, sample_frames
from pipeline.video_file import VideoFileSource
from tests.frames import decode_clip

FPS = 25


def h264(path: Path, frames: int, keyframe_every: int = 25, seed: str = "long") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": str(keyframe_every), "bf": "2"}
        for frame in synthetic.render_frames(frames, 64, 48, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture()
def opened(monkeypatch) -> list[str]:
    """The files ``av.open`` opens from now on, with an empty pool."""
    open_containers.OPEN.clear()
    calls: list[str] = []
    real = av.open

    def counting(path, *args, **kwargs):
        calls.append(Path(str(path)).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting)
    yield calls
    open_containers.OPEN.clear()


def segment(path: Path, start: float, end: float) -> np.ndarray:
    source = VideoFileSource(path, FPS, start, end)
    frames = decode_clip(source).frames
    source.close()
    return frames


def test_segments_of_one_video_share_its_container_and_its_frames(tmp_path, opened):
    video = h264(tmp_path / "long.mp4", 300)
    written = len(opened)
    cuts = [(2.2, 3.0), (6.1, 7.0), (9.5, 10.4), (4.0, 4.6)]  # mid-GOP starts, one backwards
    pooled = [segment(video, *cut) for cut in cuts]
    assert opened[written:] == ["long.mp4"] * 2  # the index, then one container for all
    open_containers.OPEN.clear()
    for cut, frames in zip(cuts, pooled):
        fresh = segment(video, *cut)
        open_containers.OPEN.clear()  # each one on a container of its own
        assert np.array_equal(frames, fresh), cut
    with av.open(str(video)) as container:  # and both are ffmpeg's frames at those times
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert np.array_equal(pooled[1][0], every[int(np.ceil(6.1 * FPS))])


def test_a_replaced_file_is_opened_again(tmp_path, opened):
    video = h264(tmp_path / "long.mp4", 150)
    first = segment(video, 2.2, 3.0)
    other = h264(tmp_path / "other.mp4", 150, seed="other")
    shutil.copyfile(other, video)
    os.utime(video, ns=(1, 1))  # another modification time, whatever the clock's resolution
    assert not np.array_equal(segment(video, 2.2, 3.0), first)
    assert np.array_equal(segment(video, 2.2, 3.0), segment(other, 2.2, 3.0))


def test_a_reader_from_the_start_or_by_the_stages_api_leaves_nothing_open_to_misread(
    tmp_path, opened
):
    video = h264(tmp_path / "long.mp4", 150)
    segment(video, 3.0, 4.0)  # a kept container now sits after frame 100
    head = segment(video, 0.0, 0.5)  # from keyframe 0: a fresh container, not the kept one
    with av.open(str(video)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert np.array_equal(head, np.stack(every[: len(head)]))
    row = {"source_path": "long.mp4", "fps": FPS, "start": 3.0, "end": 4.0, "num_frames": 25}
    clips = list(sample_frames(tmp_path, row, FrameSelection()))
    assert np.array_equal(np.concatenate([c.frames for c in clips]), segment(video, 3.0, 4.0))


def test_a_forked_process_never_reads_its_parents_containers(tmp_path):
    video = h264(tmp_path / "long.mp4", 150)
    open_containers.OPEN.clear()
    segment(video, 3.0, 4.0)  # its container is kept
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: the parent's kept container is not offered
        os.close(read)
        offered = open_containers.OPEN.take(video, 1)
        os.write(write, b"1" if offered is None else b"0")
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1"
    assert open_containers.OPEN.take(video, 1) is not None  # still the parent's
    open_containers.OPEN.clear()
