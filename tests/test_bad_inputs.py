"""Bad inputs through the CLI: each lands in a quarantine with a reason constant and a one-line
detail (or, for a file the whole run depends on, one error line), and every good sample is
still written, up to the shards. Phoenix14T's frame defects and annotation problems are in
tests/stages/test_manifest_quarantine.py, the CSL-Daily label pickle in tests/pipeline/
test_unpickle.py, unknown config keys in tests/pipeline/test_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline import manifest as m
from pipeline import synthetic
from pipeline.shards import decode_npy, iter_tar_samples
from stages.hands.hamer import load_hamer
from tests.conftest import REPO, manifest_rows, prep, quarantine_rows, run_generic

HEADER = "id,path,text,language,split,fps"


def write_clip(path: Path, frames: int, size: tuple[int, int] = (48, 40)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic.write_video(path, synthetic.render_frames(frames, *size, path.stem), 25.0, size)
    return path.name


def write_frame_folder(folder: Path, frames: int, pattern: str, first: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for number, frame in enumerate(
        synthetic.render_frames(frames, 48, 40, folder.name), start=first
    ):
        paths.append(folder / pattern.format(number))
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return paths


def write_mixed_corpus(root: Path) -> tuple[Path, dict[str, str]]:
    """A generic corpus of good samples mixed with every kind of bad file, id and path.

    Returns the CSV and the good samples' ids with their splits."""
    clips = root / "clips"
    for name, frames in (("vid_a", 12), ("vid_b", 10), ("vid_c", 9)):
        write_clip(clips / f"{name}.mp4", frames)
    write_clip(clips / "one_frame.mp4", 1)
    (clips / "zero.mp4").touch()
    (clips / "not_video.mp4").write_text("id,text\n1,this is a CSV file named like a video\n")
    (clips / "truncated.mp4").write_bytes((clips / "vid_a.mp4").read_bytes()[:-600])
    write_frame_folder(root / "frames" / "png_ok", 8, "images{:04d}.png", 1)
    write_frame_folder(root / "frames" / "jpg_ok", 8, "{:06d}.jpg", 0)
    bad_png = write_frame_folder(root / "frames" / "png_bad", 8, "images{:04d}.png", 1)[4]
    bad_png.write_bytes(bad_png.read_bytes()[:120])
    bad_jpg = write_frame_folder(root / "frames" / "jpg_bad", 8, "{:06d}.jpg", 0)[3]
    bad_jpg.write_bytes(bad_jpg.read_bytes()[:200])
    write_frame_folder(root / "frames" / "gap", 8, "{:06d}.jpg", 0)[5].unlink()
    rows = [
        "vid_a,clips/vid_a.mp4,der erste satz,de,train,",
        "png_ok,frames/png_ok,ein bild ordner,de,train,25",
        f"abs_inside,{clips / 'vid_c.mp4'},ein absoluter pfad im ordner,de,train,",
        "vid_b,clips/vid_b.mp4,der zweite satz,de,dev,",
        "jpg_ok,frames/jpg_ok,jpeg bilder,de,test,25",
        "truncated,clips/truncated.mp4,abgeschnitten,de,train,",
        "zero,clips/zero.mp4,leer,de,train,",
        "not_video,clips/not_video.mp4,kein video,de,train,",
        "png_bad,frames/png_bad,kaputtes png,de,train,25",
        "jpg_bad,frames/jpg_bad,kaputtes jpeg,de,dev,25",
        "gap,frames/gap,eine luecke,de,dev,25",
        "one_frame,clips/one_frame.mp4,ein bild,de,train,",
        "vid_a,clips/vid_a.mp4,doppelt im split,de,train,",
        "vid_b,clips/vid_b.mp4,doppelt ueber splits,de,test,",
        "a/b,clips/vid_a.mp4,schraegstrich,de,train,",
        "..,clips/vid_a.mp4,punkte,de,train,",
        ".hidden,clips/vid_a.mp4,versteckt,de,train,",
        "passwd,../../etc/passwd,nach oben,de,train,",
        "abs_outside,/etc/passwd,absolut,de,train,",
    ]
    csv_path = root / "corpus.csv"
    text = (
        "\n".join([HEADER, *rows]).encode()
        + b"\nlatin1,clips/vid_a.mp4,caf\xe9 au lait,de,train,\n"
    )
    csv_path.write_bytes(text)
    return csv_path, {
        "vid_a": "train",
        "png_ok": "train",
        "abs_inside": "train",
        "vid_b": "dev",
        "jpg_ok": "test",
    }


EXPECTED_QUARANTINE = {
    ("truncated", "train", m.UNREADABLE_FILE),
    ("zero", "train", m.UNREADABLE_FILE),
    ("not_video", "train", m.UNREADABLE_FILE),
    ("png_bad", "train", m.CORRUPT_FRAME),
    ("jpg_bad", "dev", m.CORRUPT_FRAME),
    ("gap", "dev", m.FRAME_GAP),
    ("one_frame", "train", m.TOO_FEW_FRAMES),
    ("vid_a", "train", m.DUPLICATE_ID),
    ("vid_b", "test", m.DUPLICATE_ID),
    ("a/b", "train", m.UNSAFE_ID),
    ("..", "train", m.UNSAFE_ID),
    (".hidden", "train", m.UNSAFE_ID),
    ("passwd", "train", m.PATH_ESCAPES_ROOT),
    ("abs_outside", "train", m.PATH_ESCAPES_ROOT),
    ("latin1", "train", m.UNDECODABLE_TEXT),
}


def test_mixed_corpus_quarantines_each_bad_sample_and_shards_every_good_one(tmp_path, tiny_dinov2):
    csv_path, good = write_mixed_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    result = run_generic(
        "features", csv_path, out, "--dinov2", tiny_dinov2, "--max-quarantine-share", 1
    )
    assert result.exit_code == 0, result.output
    quarantined = quarantine_rows(out)
    assert {(q["id"], q["split"], q["reason"]) for q in quarantined} == EXPECTED_QUARANTINE
    assert len(quarantined) == len(EXPECTED_QUARANTINE)
    for row in quarantined:
        assert row["detail"] and "\n" not in row["detail"] and len(row["detail"]) <= 300, row
    details = {(q["id"], q["reason"]): q["detail"] for q in quarantined}
    assert "empty file" in details[("zero", m.UNREADABLE_FILE)]
    assert "images0005.png" in details[("png_bad", m.CORRUPT_FRAME)]
    assert "000003.jpg" in details[("jpg_bad", m.CORRUPT_FRAME)]
    assert details[("gap", m.FRAME_GAP)] == "1 frame number(s) missing: 5"
    assert "corpus.csv line 21" in details[("latin1", m.UNDECODABLE_TEXT)]
    assert "already used in split dev" in details[("vid_b", m.DUPLICATE_ID)]
    assert "outside the dataset root" in details[("abs_outside", m.PATH_ESCAPES_ROOT)]
    written = {
        split: {r["id"] for r in manifest_rows(out, split)} for split in ("train", "dev", "test")
    }
    assert written == {
        s: {i for i, sp in good.items() if sp == s} for s in ("train", "dev", "test")
    }
    assert (
        manifest_rows(out, "train")[0]["translation"] == "der erste satz"
    )  # the first of the duplicates won
    for split, ids in written.items():
        samples = {
            k: f for tar in (out / "shards" / split).glob("*.tar") for k, f in iter_tar_samples(tar)
        }
        assert set(samples) == ids
        for fields in samples.values():
            frames = json.loads(fields["json"])["num_frames"]
            assert decode_npy(fields["dinov2.npy"]).shape == (frames, 32)
    assert prep("verify", "--out", out, "--max-quarantine-share", 1).exit_code == 0
    strict = prep("verify", "--out", out)  # every stage's share is held to the limit
    assert strict.exit_code == 1
    assert "manifest train: 12 of 15 samples quarantined (80%)" in strict.output


def test_csl_daily_undecodable_and_duplicate_split_lines(csl_root, tmp_path):
    split_file = csl_root / "sentence_label" / "split_1.txt"
    lines = split_file.read_bytes().splitlines()
    names = [line.split(b"|")[0].decode() for line in lines[1:]]
    lines[2] = lines[2].replace(b"|", b"\xff|")  # invalid UTF-8 in a name
    lines.append(lines[1])  # the same line twice
    lines.append(lines[3].split(b"|")[0] + b"|test")  # the same name in another split
    split_file.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "csl-daily",
        "--root",
        csl_root,
        "--out",
        out,
        "--quiet",
        "--max-quarantine-share",
        1,
    )
    assert result.exit_code == 0, result.output
    found = [(q["reason"], q["detail"]) for q in quarantine_rows(out)]
    assert [r for r, _ in found].count(m.DUPLICATE_ID) == 2 and len(found) == 3
    undecodable = [d for r, d in found if r == m.UNDECODABLE_TEXT]
    assert undecodable == ["split_1.txt line 3 is not valid UTF-8"]
    written = {
        r["id"]
        for s in ("train", "dev", "test")
        if (out / "manifest" / f"{s}.parquet").exists()
        for r in manifest_rows(out, s)
    }
    assert written == set(names) - {names[1]}


def test_narrow_videos_decode_like_opencv(tmp_path):
    """Narrow videos (48 pixels wide, as in the mixed corpus above; decord padded their rows):
    every frame comes out exactly as OpenCV decodes it, densely and sparsely."""
    from pipeline.video import FrameSelection
    from pipeline.video_file import VideoFileSource
    from tests.frames import decode_clip

    for width in (16, 48, 64):
        path = tmp_path / f"w{width}.mp4"
        write_clip(path, 30, size=(width, 40))
        capture, reference = cv2.VideoCapture(str(path)), []
        while (frame := capture.read()[1]) is not None:
            reference.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        assert np.array_equal(decode_clip(VideoFileSource(path)).frames, np.stack(reference))
        assert np.array_equal(
            decode_clip(VideoFileSource(path), FrameSelection(7)).frames, np.stack(reference[::7])
        )


class Payload:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hamer_checkpoint_whose_pickle_would_run_code_never_runs_it(
    tmp_path, generic_csv, tiny_hamer
):
    checkpoint, config = tiny_hamer
    marker = tmp_path / "pwned"
    evil = tmp_path / "hamer.ckpt"
    state = load_hamer(checkpoint, config).state_dict()
    torch.save(
        {"state_dict": state, "hyper_parameters": Payload(marker), "callbacks": [Payload(marker)]},
        evil,
    )
    out = tmp_path / "out"
    result = run_generic(
        "features",
        generic_csv,
        out,
        "--features",
        "hamer",
        "--hamer",
        evil,
        "--hamer-config",
        config,
    )
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    samples = [s for tar in (out / "shards").glob("*/*.tar") for s in iter_tar_samples(tar)]
    assert len(samples) == 5 and all(decode_npy(f["hamer.npy"]).shape[1] == 288 for _, f in samples)
    payload_only = tmp_path / "payload.ckpt"
    torch.save(Payload(marker), payload_only)
    converted = prep(
        "convert-hamer", payload_only, tmp_path / "x.safetensors", "--hamer-config", config
    )
    assert (
        converted.exit_code == 1
        and converted.stderr.startswith("prep: error: ")
        and "state_dict" in converted.stderr
    )
    assert not marker.exists()


PEAK_RSS = """import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code.returncode, code.stderr[-2000:])
"""


def peak_rss_mib(*args: object) -> float:
    """Peak resident memory of a fresh ``prep`` process, in MiB. Two malloc arenas: with one per
    thread, glibc's fragmentation alone moves the peak by ~100 MiB from run to run."""
    binary = REPO / ".venv" / "bin" / "prep"
    command = [str(binary)] if binary.exists() else [sys.executable, "-m", "pipeline.cli"]
    probe = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "MALLOC_ARENA_MAX": "2"},
    )
    kib, code, stderr = probe.stdout.split(" ", 2)
    assert code == "0", stderr
    return int(kib) / 1024


def test_very_long_clip_runs_in_bounded_memory(tmp_path):
    """10,000 frames (32x32), every one decoded by the manifest's deep check and the features
    stage (which encodes every tenth), peak at about the memory of a 600-frame clip, which
    already fills every buffer: frames stream in bounded chunks and nothing is kept per frame.
    The DINOv2 here is wide enough (256) that keeping each batch's output tokens (as a view of
    the model's output once did) would add ~260 MiB."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = tmp_path / "dinov2-256"
    Dinov2Model(
        Dinov2Config(
            hidden_size=256,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=256,
            image_size=56,
            patch_size=14,
        )
    ).save_pretrained(model)
    peaks = {}
    for name, frames in (("short", 600), ("long", 10_000)):
        corpus = tmp_path / name
        write_clip(corpus / "clip.mp4", frames, size=(32, 32))
        (corpus / "corpus.csv").write_text(f"{HEADER}\nclip,clip.mp4,ein langer satz,de,train,\n")
        out = tmp_path / f"out-{name}"
        peaks[name] = peak_rss_mib(
            "run",
            "--stage",
            "features",
            "--dataset",
            "generic",
            "--root",
            corpus / "corpus.csv",
            "--out",
            out,
            "--dinov2",
            model,
            "--deep-check",
            "--frame-step",
            10,
            "--batch-size",
            16,
            "--quiet",
        )
        assert manifest_rows(out, "train")[0]["num_frames"] == frames
    ((_, fields),) = iter_tar_samples(
        next((tmp_path / "out-long" / "shards" / "train").glob("*.tar"))
    )
    assert decode_npy(fields["dinov2.npy"]).shape == (1000, 256)
    print(f"peak RSS: 600 frames {peaks['short']:.0f} MiB, 10,000 frames {peaks['long']:.0f} MiB")
    assert peaks["long"] - peaks["short"] < 200, (
        peaks
    )  # measured +9..+65 MiB; kept outputs +430; kept frames GiBs


def test_a_stage_after_an_all_quarantined_manifest_says_so(generic_csv, tmp_path):
    out = tmp_path / "out"
    result = run_generic(
        "pseudo-gloss", generic_csv, out, "--min-frames", 1000, "--max-quarantine-share", 1
    )
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"prep: error: stage pseudo-gloss: nothing to do: all 5 samples were quarantined by manifest "
        f"(too_few_frames 5); see {out / 'manifest' / 'quarantine.parquet'}"
    )
