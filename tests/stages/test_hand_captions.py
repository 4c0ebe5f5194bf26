"""Stage hand-captions: chunking, the kinematic describer on the real hand clip, embeddings,
and captions riding along into the shards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.shards import decode_npy, iter_tar_samples
from stages.hand_captions import HandCaptionsStage
from stages.hand_captions.chunking import chunk_spans, chunks_of, join_captions
from tests.conftest import copy_beside, prep, raised_hand_keypoints, run_generic


@pytest.mark.parametrize(
    "frames, spans",
    [
        (1, [(0, 1)]),
        (16, [(0, 16)]),
        (17, [(0, 17)]),
        (31, [(0, 31)]),
        (32, [(0, 16), (16, 32)]),
        (33, [(0, 16), (16, 33)]),
    ],
)
def test_beyondgloss_chunking_merges_the_tail(frames, spans):
    assert chunk_spans(frames) == spans


def test_overlapping_chunks_and_time_spans():
    assert chunk_spans(40, 16, 8) == [(0, 16), (8, 24), (16, 32), (24, 40)]
    chunks = chunks_of(33, 25.0)
    assert [(c.start_s, c.end_s) for c in chunks] == [(0.0, 0.64), (0.64, 1.32)]
    assert join_captions(chunks, ["a.", "b."]) == "[0.00–0.64 s] a. [0.64–1.32 s] b."


@pytest.fixture(scope="module", params=["synthetic", "real"])
def captioned(request, tmp_path_factory):
    """The kinematic captioner on the generated clip with a raised hand's keypoints, and on the
    real clip with MediaPipe's detections of the real raised hand."""
    clip = request.getfixturevalue(f"{request.param}_hand_clip")
    base = tmp_path_factory.mktemp("captions")
    annotations = base / "clips.csv"
    annotations.write_text(
        f"id,path,text,language,split\nhand_clip,{copy_beside(clip, base)},eine hand hebt sich,de,test\n"
    )
    flags = (
        ["--hand-keypoints", raised_hand_keypoints(base / "keypoints", "hand_clip")]
        if request.param == "synthetic"
        else []
    )
    out = base / "out"
    result = run_generic("hand-captions", annotations, out, "--captioner", "kinematic", *flags)
    assert result.exit_code == 0, result.output
    return annotations, out, flags


def test_kinematic_captions_follow_the_raised_hand(captioned):
    _, out, _ = captioned
    chunks = pq.read_table(out / "hand-captions" / "test.chunks.parquet").to_pylist()
    assert [(c["start_frame"], c["end_frame"]) for c in chunks] == [(0, 16), (16, 32), (32, 58)]
    assert all(c["backend"] == "kinematic" and c["end_s"] > c["start_s"] for c in chunks)
    assert "rises" not in chunks[0]["text"]
    assert (
        "right hand" in chunks[1]["text"] and "rises" in chunks[1]["text"]
    )  # frames 16-31: the hand goes up
    assert (
        "lowers" in chunks[2]["text"] and "bottom edge" in chunks[2]["text"]
    )  # then comes down again
    sample = pq.read_table(out / "hand-captions" / "test.parquet").to_pylist()[0]
    assert sample["hand_caption"].startswith("[0.00–0.54 s] ") and sample["chunks"] == 3
    embedding = np.asarray(sample["caption_emb"])
    assert embedding.shape == (384,) and abs(np.linalg.norm(embedding) - 1) < 1e-4


def test_captions_are_deterministic(captioned, tmp_path):
    annotations, out, flags = captioned
    again = tmp_path / "again"
    assert (
        run_generic(
            "hand-captions", annotations, again, "--captioner", "kinematic", *flags
        ).exit_code
        == 0
    )
    for name in ("test.parquet", "test.chunks.parquet"):
        assert (again / "hand-captions" / name).read_bytes() == (
            out / "hand-captions" / name
        ).read_bytes()


def test_captions_and_embeddings_reach_the_shards(captioned, tiny_dinov2):
    annotations, out, flags = captioned
    result = run_generic(
        "features", annotations, out, "--dinov2", tiny_dinov2, "--captioner", "kinematic", *flags
    )
    assert result.exit_code == 0, result.output
    ((_key, fields),) = iter_tar_samples(next((out / "shards" / "test").glob("*.tar")))
    meta = json.loads(fields["json"])
    assert meta["hand_caption"].startswith("[0.00–") and "caption_emb" not in meta
    assert decode_npy(fields["caption_emb.npy"]).shape == (384,)
    assert meta["provenance"]["stages"]["hand-captions"] == HandCaptionsStage.version
    assert prep("verify", "--out", out).exit_code == 0
