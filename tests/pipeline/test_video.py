import cv2
import numpy as np
import pytest

from pipeline import synthetic
from pipeline.video import (
    DecodeError,
    FrameFolderSource,
    FrameSelection,
    iter_clip,
    list_frame_files,
    numbering_gaps,
    open_source,
)
from pipeline.video_file import VideoFileSource
from tests.conftest import HAND_CLIP_FPS
from tests.frames import decode_clip


def test_frame_selection_step_head_and_uniform():
    assert FrameSelection().indices(5).tolist() == [0, 1, 2, 3, 4]
    assert FrameSelection(step=2).indices(7).tolist() == [0, 2, 4, 6]
    assert FrameSelection(max_frames=3, sampling="head").indices(10).tolist() == [0, 1, 2]
    assert FrameSelection(max_frames=3).indices(10).tolist() == [0, 4, 9]
    assert FrameSelection(step=2, max_frames=2).indices(10).tolist() == [0, 8]
    with pytest.raises(ValueError):
        FrameSelection(step=0)


def test_h264_clip_has_58_frames_at_about_30_fps(hand_clip):
    source = open_source(hand_clip)
    assert (source.num_frames, source.width, source.height) == (58, 540, 720)
    assert source.fps == pytest.approx(float(HAND_CLIP_FPS), rel=1e-3)
    clip = decode_clip(source, FrameSelection(step=2))
    assert clip.frames.shape == (29, 720, 540, 3) and clip.frames.dtype == np.uint8
    assert clip.timestamps[1] == pytest.approx(2 / source.fps)


def test_long_clip_is_read_in_bounded_batches(hand_clip):
    source = open_source(hand_clip)
    sizes = [len(c.frames) for c in iter_clip(source, FrameSelection(), batch_size=16)]
    assert sizes == [16, 16, 16, 10]


def test_video_segment_by_seconds(hand_clip):
    source = VideoFileSource(hand_clip, start=0.5, end=1.0)
    assert source.num_frames == round(1.0 * source.fps) - round(0.5 * source.fps)
    whole = decode_clip(open_source(hand_clip)).frames
    first = round(0.5 * source.fps)
    np.testing.assert_array_equal(decode_clip(source).frames[0], whole[first])


def test_frame_folder_matches_opencv_and_ignores_stray_files(tmp_path):
    frames = list(synthetic.render_frames(5, 40, 30, "x"))
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(tmp_path / f"images{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "Thumbs.db").write_bytes(b"junk")
    source = FrameFolderSource(tmp_path, fps=25)
    assert source.num_frames == 5
    clip = decode_clip(source)
    np.testing.assert_array_equal(clip.frames, np.stack(frames))
    assert clip.timestamps.tolist() == [0, 0.04, 0.08, 0.12, 0.16]


def test_numbering_gaps_and_order(tmp_path):
    for n in (1, 2, 10, 4):
        (tmp_path / f"images{n:04d}.png").write_bytes(b"x")
    files = list_frame_files(tmp_path)
    assert [f.name for f in files] == [
        "images0001.png",
        "images0002.png",
        "images0004.png",
        "images0010.png",
    ]
    assert numbering_gaps(files) == [3, 5, 6, 7, 8, 9]


def test_unreadable_video_raises_decode_error(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(DecodeError, match="unreadable video"):
        open_source(fake)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(DecodeError, match="empty file"):
        open_source(empty)


def test_sparse_and_dense_reads_agree(hand_clip):
    whole = decode_clip(open_source(hand_clip)).frames
    sparse = decode_clip(open_source(hand_clip), FrameSelection(step=7)).frames  # batched get_batch
    np.testing.assert_array_equal(sparse, whole[::7])
    dense = decode_clip(open_source(hand_clip), FrameSelection(step=2)).frames  # sequential pass
    np.testing.assert_array_equal(dense, whole[::2])


def test_segments_of_one_video_index_it_once_and_a_changed_file_again(tmp_path, monkeypatch):
    """How2Sign/YouTube-ASL cut many samples from one long video: its demux index is made once
    per process; rewriting the file (another size or time) makes a new one."""
    from pipeline import video_file

    path = tmp_path / "long.mp4"
    synthetic.write_video(path, synthetic.render_frames(50, 64, 48, "long"), 25.0, (64, 48))
    indexed = []
    original = video_file._index
    monkeypatch.setattr(video_file, "_index", lambda p: indexed.append(p) or original(p))
    video_file._cached_index.cache_clear()
    first = decode_clip(open_source(path, 25.0, 0.4, 0.8)).frames
    second = decode_clip(open_source(path, 25.0, 1.2, 1.6)).frames
    assert len(indexed) == 1 and len(first) == len(second) == 10
    synthetic.write_video(path, synthetic.render_frames(30, 64, 48, "short"), 25.0, (64, 48))
    assert open_source(path, 25.0).num_frames == 30 and len(indexed) == 2
    video_file._cached_index.cache_clear()


def test_a_stage_reads_a_manifest_rows_selected_frames_and_times(tmp_path, tiny_dinov2):
    """``sample_frames``: the public way a stage reads a clip (the one the built-in stages,
    exporters and the report use) gives the frames and times the features stage stored."""
    import json

    from pipeline import manifest as m
    from pipeline.shards import iter_tar_samples
    from pipeline.video import open_sample, sample_frames
    from tests.conftest import manifest_rows, run_generic

    samples = synthetic.default_samples("de", clips=3, frames=(9, 14))
    csv = synthetic.write_generic(tmp_path / "corpus", samples, "de")
    out = tmp_path / "out"
    result = run_generic("features", csv, out, "--dinov2", tiny_dinov2, "--frame-step", 2)
    assert result.exit_code == 0, result.output
    stored = {}
    for tar in (out / "shards" / "train").glob("*.tar"):
        for _key, fields in iter_tar_samples(tar):
            meta = json.loads(fields["json"])
            stored[meta["id"]] = meta
    provenance = m.read_provenance(out / "manifest" / "train.parquet")
    selection = FrameSelection(**provenance["frame_selection"])
    base = m.source_base(provenance, csv)
    for row in manifest_rows(out, "train"):
        clips = list(sample_frames(base, row, selection, batch_size=4))
        indices = np.concatenate([c.indices for c in clips]).tolist()
        times = np.concatenate([c.timestamps for c in clips]).round(6).tolist()
        assert indices == stored[row["id"]]["frame_indices"] == list(range(0, row["num_frames"], 2))
        assert times == stored[row["id"]]["frame_times"]
        frames = np.concatenate([c.frames for c in clips])
        assert frames.shape == (len(indices), row["height"], row["width"], 3)
        assert np.array_equal(frames, open_source(base / row["source_path"]).read(indices))
    changed = dict(row, num_frames=row["num_frames"] + 1)
    with pytest.raises(DecodeError, match="the manifest counted .*: rerun it"):
        open_sample(base, changed)
