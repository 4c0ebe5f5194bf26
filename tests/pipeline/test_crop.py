"""The signer crop: prep's frames equal what OpenASL's own ``crop_video.py`` makes of the same
frames, and ``--signer-crop`` records each sample's box so every stage reads cropped frames."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.crop import CROP_SIZE, crop_frame, square_box
from pipeline.shards import iter_tar_samples
from pipeline.video import open_source
from tests.conftest import manifest_rows, prep
from tests.corpora.openasl import BOX, RAW_SIZE, write_openasl
from tests.frames import decode_clip


def official_crop(imgs, bbox, target_size):
    """chevalierNoir/OpenASL prep/crop_video.py l.16-35 (crop_resize), re-typed for the test;
    ``bbox`` in pixels as l.87-89 makes it."""
    x0, y0, x1, y1 = bbox[0], bbox[1], bbox[2], bbox[3]
    if x1 - x0 < y1 - y0:
        exp = (y1 - y0 - (x1 - x0)) / 2
        x0, x1 = x0 - exp, x1 + exp
    else:
        exp = (x1 - x0 - (y1 - y0)) / 2
        y0, y1 = y0 - exp, y1 + exp
    x0, x1, y0, y1 = int(x0), int(x1), int(y0), int(y1)
    left_expand = -x0 if x0 < 0 else 0
    up_expand = -y0 if y0 < 0 else 0
    right_expand = x1 - imgs[0].shape[1] + 1 if x1 > imgs[0].shape[1] - 1 else 0
    down_expand = y1 - imgs[0].shape[0] + 1 if y1 > imgs[0].shape[0] - 1 else 0
    rois = []
    for img in imgs:
        expanded = cv2.copyMakeBorder(
            img, up_expand, down_expand, left_expand, right_expand, cv2.BORDER_CONSTANT, (0, 0, 0)
        )
        roi = expanded[y0 + up_expand : y1 + up_expand, x0 + left_expand : x1 + left_expand]
        rois.append(cv2.resize(roi, (target_size, target_size)))
    return rois


def pixels(box, width, height):
    x0, y0, x1, y1 = box
    return [int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height)]


def test_the_crop_equals_the_official_one_inside_and_past_the_frame():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    boxes = [
        [0.25, 0.1, 0.6, 0.9],  # tall: widened
        [0.1, 0.3, 0.9, 0.6],  # wide: heightened past the top and bottom (black)
        [-0.1, 0.2, 0.4, 1.2],  # past the left and bottom edges
        [0.7, 0.0, 1.0, 0.5],  # up to the right edge
    ]
    for box in boxes:
        square = square_box(box, 160, 90)
        [expected] = official_crop([frame], pixels(box, 160, 90), CROP_SIZE)
        np.testing.assert_array_equal(crop_frame(frame, square, CROP_SIZE), expected)


def test_signer_crop_records_the_box_and_every_read_is_the_official_crop(tmp_path):
    root = write_openasl(tmp_path, clips=False)  # every sample is cut from a full video
    plain, cropped = tmp_path / "plain", tmp_path / "cropped"
    for out, flags in ((plain, ()), (cropped, ("--signer-crop",))):
        args = ["--dataset", "openasl", "--root", root, "--out", out, "--quiet", *flags]
        result = prep("run", "--stage", "manifest", *args)
        assert result.exit_code == 0, result.output
    [row] = [r for r in manifest_rows(plain, "dev")]
    [boxed] = [r for r in manifest_rows(cropped, "dev")]
    assert row["crop"] is None and (row["width"], row["height"]) == RAW_SIZE
    assert boxed["crop"] == BOX and boxed["width"] == boxed["height"] == CROP_SIZE
    assert boxed["num_frames"] == row["num_frames"] and boxed["fingerprint"] != row["fingerprint"]
    video = root / boxed["source_path"]
    whole = decode_clip(open_source(video, None, row["start"], row["end"])).frames
    height, width = whole.shape[1:3]
    expected = official_crop(list(whole), pixels(BOX, width, height), CROP_SIZE)
    got = decode_clip(open_source(video, None, boxed["start"], boxed["end"], crop=boxed["crop"]))
    np.testing.assert_array_equal(got.frames, np.stack(expected))


def test_the_features_stage_stores_the_cropped_frames(tmp_path, tiny_dinov2):
    root = write_openasl(tmp_path, clips=False)
    out = tmp_path / "out"
    args = ["--dataset", "openasl", "--root", root, "--out", out, "--quiet", "--signer-crop"]
    frames = ["--with-frames", "--frame-size", CROP_SIZE, "--dinov2", tiny_dinov2]
    assert prep("run", "--stage", "features", *args, *frames).exit_code == 0
    [row] = manifest_rows(out, "dev")
    video = root / row["source_path"]
    expected = decode_clip(open_source(video, None, row["start"], row["end"], crop=row["crop"]))
    [(_, fields)] = [
        s for tar in sorted((out / "shards" / "dev").glob("*.tar")) for s in iter_tar_samples(tar)
    ]
    stored = [
        cv2.imdecode(np.frombuffer(fields[n], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        for n in sorted(fields)
        if n.startswith("frame_")
    ]
    assert len(stored) == row["num_frames"] == len(expected.frames)
    difference = np.abs(np.stack(stored).astype(int) - expected.frames.astype(int)).mean()
    assert difference < 4  # JPEG's loss only: the same 224x224 crops
