"""Stage hand-captions with VideoLLMs: grid images, video input, prompts and their hashes,
batching across clips, refinement, chunk-level resume, and clear errors. A tiny random
Qwen2-VL and Qwen2 text model, saved like real checkpoints, stand in for the real ones."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.journal import UnitJournal
from stages.hand_captions.grid import grid_image, pick_frames
from stages.hand_captions.prompts import DEFAULT_PROMPT, prompt_hash, resolve_prompt
from tests.conftest import prep, run_generic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from tests.tiny_models import write_tiny_qwen2vl

    return write_tiny_qwen2vl(tmp_path_factory.mktemp("models") / "qwen2vl-tiny")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from tests.tiny_models import write_tiny_text_lm

    return write_tiny_text_lm(tmp_path_factory.mktemp("models") / "qwen2-tiny")


@pytest.fixture(scope="module")
def clips_csv(tmp_path_factory, synthetic_hand_clip) -> Path:
    """An h264 clip three times (58 frames -> 3 chunks each); the tiny model's words are noise,
    so the real clip would test nothing more here."""
    base = tmp_path_factory.mktemp("clips")
    shutil.copy(
        synthetic_hand_clip, base / "hand.mp4"
    )  # annotation paths must stay inside the dataset root
    rows = [f"clip{i},hand.mp4,eine hand,de,test" for i in range(3)]
    (base / "clips.csv").write_text("id,path,text,language,split\n" + "\n".join(rows) + "\n")
    return base / "clips.csv"


def chunks_of_run(out: Path) -> list[dict]:
    return pq.read_table(out / "hand-captions" / "test.chunks.parquet").to_pylist()


def unit_stats(out: Path) -> dict:
    return json.loads(
        (out / "_units" / "hand-captions" / "test" / "00000" / "stats.json").read_text()
    )["counts"]


def caption(csv: Path, out: Path, *flags: object):
    return run_generic("hand-captions", csv, out, *flags)


def test_grid_tiles_frames_in_reading_order_between_white_separators():
    frames = np.stack(
        [np.full((30, 40, 3), 10 * i, np.uint8) for i in range(5)]
    )  # 5 frames -> 3 x 3 tiles
    grid = grid_image(frames, separator=50)
    assert grid.shape == (3 * 30 + 2 * 50, 3 * 40 + 2 * 50, 3)
    assert (grid[0:30, 90:130] == 10).all()  # frame 1: first row, second column
    assert (grid[80:110, 0:40] == 30).all()  # frame 3: second row, first column
    assert (grid[30:80] == 255).all() and (grid[160:190] == 255).all()  # separator, empty last row
    tiles = np.random.default_rng(0).integers(0, 256, (16, 720, 540, 3), dtype=np.uint8)
    big = grid_image(tiles)  # 4 x 4 portrait frames: 2310 x 3030, downscaled as BeyondGloss does
    assert big.shape == (1920, int(2310 * 1920 / 3030), 3)
    full = np.full((3030, 2310, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // 4) * 770, (i % 4) * 590
        full[top : top + 720, left : left + 540] = tile
    reference = Image.fromarray(full).resize((big.shape[1], 1920), Image.BILINEAR)
    assert np.array_equal(big, np.asarray(reference))


def test_frames_picked_evenly_inside_a_chunk():
    assert pick_frames(16, 32, 0) == list(range(16, 32))
    assert pick_frames(16, 32, 4) == [18, 22, 26, 30]
    assert pick_frames(0, 3, 8) == [0, 1, 2]


def test_prompt_from_text_or_file_and_its_hash(tmp_path):
    assert resolve_prompt(None, DEFAULT_PROMPT, "--prompt").startswith(
        "This is a sign language video"
    )
    assert DEFAULT_PROMPT.endswith(  # describe_segments.py l.157: the two parts, no space
        "emotions shown.Describe only the motion and gestures of the person in the image focus "
        "on hands and face."
    )
    (tmp_path / "p.txt").write_text("Describe the hands.\n")
    assert (
        resolve_prompt(str(tmp_path / "p.txt"), DEFAULT_PROMPT, "--prompt") == "Describe the hands."
    )
    assert (
        resolve_prompt("Say what the hands do.", DEFAULT_PROMPT, "--prompt")
        == "Say what the hands do."
    )
    assert prompt_hash("a") != prompt_hash("b") and prompt_hash("a").startswith("sha256:")


def test_transformers_backend_captions_grids_batched_across_clips_and_refines(
    clips_csv, tiny_vlm, tiny_lm, tmp_path
):
    out = tmp_path / "out"
    result = caption(
        clips_csv,
        out,
        "--captioner",
        "transformers",
        "--captioner-model",
        tiny_vlm,
        "--max-new-tokens",
        6,
        "--caption-batch-size",
        4,
        "--refine-model",
        tiny_lm,
    )
    assert result.exit_code == 0, result.output
    chunks = chunks_of_run(out)
    assert [(c["id"], c["chunk_index"], c["start_frame"], c["end_frame"]) for c in chunks[:3]] == [
        ("clip0", 0, 0, 16),
        ("clip0", 1, 16, 32),
        ("clip0", 2, 32, 58),
    ]
    assert len(chunks) == 9 and {c["id"] for c in chunks} == {"clip0", "clip1", "clip2"}
    assert {(c["backend"], c["model"], c["prompt_hash"]) for c in chunks} == {
        ("transformers", str(tiny_vlm), prompt_hash(DEFAULT_PROMPT))
    }
    assert all(
        c["revision"].startswith("sha256:") and 1 <= c["generated_tokens"] <= 6 for c in chunks
    )
    assert unit_stats(out)["captioned"] == 9
    samples = pq.read_table(out / "hand-captions" / "test.parquet")
    first = samples.to_pylist()[0]
    assert (
        first["hand_caption_raw"].startswith("[0.00–0.54 s] ")
        and "[0.54–1.07 s] " in first["hand_caption_raw"]
    )
    assert first["hand_caption"] != first["hand_caption_raw"]  # rewritten by the refinement model
    meta = json.loads(samples.schema.metadata[b"prep"])
    assert meta["captioner"]["input_mode"] == "grid" and meta["refiner"]["model"] == str(tiny_lm)


def test_video_input_with_frames_sampled_inside_chunks(clips_csv, tiny_vlm, tmp_path):
    out = tmp_path / "out"
    result = caption(
        clips_csv,
        out,
        "--captioner",
        "transformers",
        "--captioner-model",
        tiny_vlm,
        "--captioner-input",
        "video",
        "--chunk-sample-frames",
        4,
        "--max-new-tokens",
        4,
        "--text-encoder",
        "none",
    )
    assert result.exit_code == 0, result.output
    chunks = chunks_of_run(out)
    assert len(chunks) == 9 and all(1 <= c["generated_tokens"] <= 4 for c in chunks)
    meta = json.loads(
        pq.read_table(out / "hand-captions" / "test.parquet").schema.metadata[b"prep"]
    )
    assert (
        meta["captioner"]["input_mode"] == "video" and meta["options"]["chunk_sample_frames"] == 4
    )


def test_batching_gives_the_captions_of_one_chunk_per_call(clips_csv, tiny_vlm, tmp_path):
    texts = []
    for size in (1, 5):
        out = tmp_path / f"batch{size}"
        result = caption(
            clips_csv,
            out,
            "--captioner",
            "transformers",
            "--captioner-model",
            tiny_vlm,
            "--max-new-tokens",
            6,
            "--caption-batch-size",
            size,
            "--text-encoder",
            "none",
        )
        assert result.exit_code == 0, result.output
        texts.append([c["text"] for c in chunks_of_run(out)])
    assert texts[0] == texts[1]


def test_a_changed_prompt_file_makes_finished_units_stale(clips_csv, tiny_vlm, tmp_path):
    prompt, out = tmp_path / "prompt.txt", tmp_path / "out"
    prompt.write_text("Describe the hands.")
    flags = (
        "--captioner",
        "transformers",
        "--captioner-model",
        tiny_vlm,
        "--max-new-tokens",
        2,
        "--text-encoder",
        "none",
        "--prompt",
        prompt,
    )
    assert caption(clips_csv, out, *flags).exit_code == 0
    assert {c["prompt_hash"] for c in chunks_of_run(out)} == {prompt_hash("Describe the hands.")}
    prompt.write_text("Describe the face.")
    result = caption(clips_csv, out, *flags)
    assert result.exit_code == 1 and "made with other options" in result.stderr


def test_a_killed_run_resumes_without_captioning_journaled_chunks_again(
    clips_csv, tiny_vlm, tmp_path
):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        "--stage",
        "hand-captions",
        "--dataset",
        "generic",
        "--root",
        str(clips_csv),
        "--out",
        str(out),
        "--captioner",
        "transformers",
        "--captioner-model",
        str(tiny_vlm),
        "--max-new-tokens",
        "4",
        "--caption-batch-size",
        "1",
        "--text-encoder",
        "none",
        "--quiet",
    ]
    journal = out / "_units" / "hand-captions" / "_journal" / "test-00000.jsonl"
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while (
        not (journal.is_file() and journal.read_bytes().count(b"\n") >= 3)
        and time.monotonic() < deadline
    ):
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "hand-captions" / "test.chunks.parquet").exists()
    journaled = journal.read_bytes().count(b"\n") - 1
    assert 2 <= journaled < 9
    status = prep("status", "--out", out)
    assert f"{journaled} pieces journaled in unfinished units" in status.stdout
    result = caption(clips_csv, out, *command[command.index("--captioner") : -1])
    assert result.exit_code == 0, result.output
    chunks = chunks_of_run(out)
    assert len({(c["id"], c["chunk_index"]) for c in chunks}) == len(chunks) == 9
    assert unit_stats(out)["captioned"] == 9 - journaled
    assert not journal.exists()


def test_journal_keeps_whole_lines_only(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = UnitJournal(path, {"config": "a"})
    journal.append([{"kind": "chunk", "key": ["x", 0]}])
    with open(path, "ab") as handle:
        handle.write(b'{"kind": "chunk", "ke')  # torn by a crash
    assert UnitJournal(path, {"config": "a"}).records == [{"kind": "chunk", "key": ["x", 0]}]
    assert UnitJournal(path, {"config": "b"}).records == []  # other settings: started afresh


def test_missing_models_and_backends_are_clear_errors(clips_csv, tmp_path):
    out = tmp_path / "o"
    result = caption(clips_csv, out)
    assert (
        result.exit_code == 1
        and "--captioner transformers needs --captioner-model" in result.stderr
    )
    result = caption(clips_csv, out, "--captioner-model", tmp_path / "nowhere")
    assert (
        result.exit_code == 1
        and "not available offline" in result.stderr
        and "huggingface-cli download" in result.stderr
    )
    result = caption(clips_csv, out, "--captioner", "vllm", "--captioner-model", tmp_path)
    assert result.exit_code == 1 and "pip install vllm" in result.stderr
    result = caption(clips_csv, out, "--captioner", "gpt", "--captioner-model", tmp_path)
    assert result.exit_code == 1 and "--captioner must be one of" in result.stderr
