"""prep report on real runs: every section of a full run, rendered in headless Chromium (not
blank, every image loaded), a manifest-only run (the rest says "not run"), and hand crops
from shard frames of an h264 clip."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import synthetic
from pipeline.report import write_report
from stages.features import report_hands
from stages.hands import detect
from tests.conftest import debian_tool, phoenix_samples, prep, raised_hand_keypoints, run_generic

SKIN = np.array([225, 190, 160])  # the synthetic signer's hands (pipeline.synthetic.render_frames)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
]
CLIPS = 3


def chromium() -> str:
    return debian_tool(("chromium", "chromium-browser", "google-chrome"), "chromium")


def render(page: Path, tmp_path: Path) -> tuple[np.ndarray, dict[str, int]]:
    """A screenshot of the page, and the image counts its inline script wrote on <body>."""
    shot = tmp_path / "shot.png"
    command = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    counts = {k: int(v) for k, v in re.findall(r'data-images-(\w+)="(\d+)"', body)}
    return cv2.imread(str(shot)), counts


def assert_not_blank(image: np.ndarray) -> None:
    assert image is not None and image.shape[:2] == (2400, 1280)
    packed = image.astype(np.uint32)
    colours = np.unique((packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2])
    assert image.std() > 10 and len(colours) > 100


def sections(html: str) -> dict[str, bool]:
    return {
        slug: ran == "true"
        for slug, ran in re.findall(r'<section id="([\w-]+)" data-ran="(\w+)"', html)
    }


def skin_keypoints(corpus: Path, folder: Path) -> list[str]:
    """[T, 2, 21, 3] keypoints per clip found by the synthetic hands' colour (image left is the
    signer's right hand); the first clip loses its hands in 3 of 4 frames, the last gets no file."""
    folder.mkdir()
    clips = sorted((corpus / "PHOENIX-2014-T" / "features" / "fullFrame-210x260px").glob("*/*"))
    for number, clip in enumerate(clips[:-1]):
        frames = [
            cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(clip.glob("*.png"))
        ]
        points = np.zeros((len(frames), 2, 21, 3), np.float32)
        for t, frame in enumerate(frames):
            ys, xs = np.nonzero((np.abs(frame.astype(int) - SKIN) < 12).all(-1))
            for slot, side in ((1, xs < frame.shape[1] // 2), (0, xs >= frame.shape[1] // 2)):
                if side.sum() >= 3 and not (number == 0 and t % 4):
                    pick = np.linspace(0, side.sum() - 1, 21).round().astype(int)
                    points[t, slot] = np.stack(
                        [xs[side][pick], ys[side][pick], np.full(21, 0.9)], axis=1
                    )
        np.save(folder / f"{clip.name}.npy", points)
    return [c.name for c in clips]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_dinov2):
    base = tmp_path_factory.mktemp("report")
    samples = phoenix_samples(10, 20)
    corpus = synthetic.write_phoenix14t(base / "corpus", samples, size=(96, 120))
    names = skin_keypoints(corpus, base / "keypoints")
    damaged = next(n for n in names[1:-1] if n in {s.name for s in samples if s.split == "train"})
    gap = next(
        (corpus / "PHOENIX-2014-T" / "features" / "fullFrame-210x260px").glob(f"*/{damaged}")
    )
    (gap / "images0005.png").unlink()  # a manifest quarantine
    out = base / "out"
    result = prep(
        "run",
        "--stage",
        "all",
        "--dataset",
        "phoenix14t",
        "--root",
        corpus,
        "--out",
        out,
        "--quiet",
        "--dinov2",
        tiny_dinov2,
        "--features",
        "dinov2,hands",
        "--hand-keypoints",
        base / "keypoints",
        "--captioner",
        "kinematic",
        "--chunk-frames",
        8,
        "--text-encoder",
        "none",
    )
    assert result.exit_code == 0, result.output
    result = prep("report", "--out", out, "--clips", CLIPS)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(out / "report" / "index.html"))
    return out, names


def test_a_full_run_shows_every_section_and_every_image_loads(full_run, tmp_path):
    out, names = full_run
    page = out / "report" / "index.html"
    html = page.read_text()
    assert sections(html) == dict.fromkeys(
        ["manifest", "pseudo-gloss", "hands", "captions", "shards", "provenance"], True
    )
    assert "not run" not in html
    expected_images = (
        1 + 1 + (1 + CLIPS) + (2 + CLIPS)
    )  # durations; glosses; hand shares + crops; captions + timelines
    for image_id in (
        "plot-durations",
        "plot-top-glosses",
        "plot-hand-shares",
        "plot-caption-words",
        "timeline-2",
        "hand-crops-2",
    ):
        assert f'id="{image_id}"' in html
    assert html.count("<img ") == expected_images
    screenshot, counts = render(page, tmp_path)
    assert counts == {"total": expected_images, "loaded": expected_images, "broken": 0}
    assert_not_blank(screenshot)

    (quarantined,) = pq.read_table(out / "manifest" / "quarantine.parquet").to_pylist()
    assert quarantined["id"] in html and quarantined["reason"] in html
    features_quarantine = pq.read_table(out / "features" / "quarantine.parquet").to_pylist()
    assert [q["id"] for q in features_quarantine] == [names[-1]]  # no keypoints file
    lowest = html.split("<h3>Lowest hand coverage</h3>")[1].split("</tr>")[1]
    assert names[0] in lowest and "25.0%" in lowest  # hands in 1 frame of 4
    chunk = pq.read_table(out / "hand-captions" / "train.chunks.parquet").to_pylist()[0]
    assert escape(chunk["text"]) in html
    index = (out / "shards" / "train" / "index.json").read_text()
    sha = re.search(r'"sha256": "([0-9a-f]{64})"', index).group(1)
    assert f'title="{sha}"' in html
    revision = json.loads((out / "features" / "summary.json").read_text())["features"]["dinov2"][
        "revision"
    ]
    assert (
        revision.startswith("sha256:") and revision in html
    )  # the DINOv2 weights in the provenance
    assert "keypoints-file" in html and "(source video)" in html


def test_the_page_is_reproducible(full_run, tmp_path):
    out, _ = full_run
    again = write_report(out, clips=CLIPS, target=tmp_path / "again.html")
    assert again.read_bytes() == (out / "report" / "index.html").read_bytes()


def test_a_manifest_only_run_says_not_run_for_the_rest(phoenix_template, tmp_path):
    out = tmp_path / "out"
    assert (
        prep(
            "run",
            "--stage",
            "manifest",
            "--dataset",
            "phoenix14t",
            "--root",
            phoenix_template,
            "--out",
            out,
            "--quiet",
        ).exit_code
        == 0
    )
    result = prep("report", "--out", out)
    assert result.exit_code == 0, result.output
    html = (out / "report" / "index.html").read_text()
    ran = sections(html)
    assert ran == {
        "manifest": True,
        "pseudo-gloss": False,
        "hands": False,
        "captions": False,
        "shards": False,
        "provenance": True,
    }
    assert html.count('<p class="not-run">not run: ') == 4
    screenshot, counts = render(out / "report" / "index.html", tmp_path)
    assert counts == {"total": 1, "loaded": 1, "broken": 0}
    assert_not_blank(screenshot)


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_hand_crops_come_from_shard_frames(tmp_path, request, source):
    """Hands from keypoints written here on the generated clip, from MediaPipe on the real one."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(request.getfixturevalue(f"{source}_hand_clip"), folder / "hand_clip.mp4")
    (folder / "clips.csv").write_text(
        "id,path,text,language,split\nhand_clip,hand_clip.mp4,eine hand hebt sich,de,test\n"
    )
    flags = (
        ["--hand-keypoints", raised_hand_keypoints(tmp_path / "keypoints", "hand_clip")]
        if source == "synthetic"
        else []
    )
    out = tmp_path / "out"
    result = run_generic(
        "features",
        folder / "clips.csv",
        out,
        "--features",
        "hands",
        "--with-frames",
        "--frame-size",
        96,
        "--max-frames",
        16,
        *flags,
    )
    assert result.exit_code == 0, result.output
    page = write_report(out, clips=1)
    html = page.read_text()
    assert 'id="hand-crops-0"' in html and "(shard frames)" in html
    assert sections(html)["captions"] is False and sections(html)["hands"] is True
    _, counts = render(page, tmp_path)
    assert (
        counts["broken"] == 0 and counts["loaded"] == html.count("<img ") == 3
    )  # durations, hand shares, crops


def test_the_hands_layout_matches_the_detector():
    assert (report_hands.PRESENT, report_hands.BOX, report_hands.LANDMARKS_PX.stop) == (
        0,
        detect.BOX,
        7 + 3 * detect.LANDMARKS,
    )
    assert report_hands.SLOTS == detect.SLOTS and detect.COLUMNS == 112


def test_an_empty_folder_is_a_clear_error(tmp_path):
    result = prep("report", "--out", tmp_path)
    assert result.exit_code == 1 and "nothing to report" in result.output
