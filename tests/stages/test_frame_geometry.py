"""``--frame-geometry``: what DINOv2 and the stored frames see of a portrait frame.

Each geometry is checked against the paper's own code written out here (BeyondGloss:
``slt_framework/dataset/slt_dataset.py:101-120``; Sign2GPT: ``image_lmdb_creator.py:66-69`` and
``augmentation/video/base_video_aug.py:55-65``), through the CLI on a Phoenix-sized corpus,
and on the real hand clip, where the issue measured how many MediaPipe hands each crop cuts.
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import PIL
import pytest
import torch
from PIL import Image

from pipeline import synthetic
from pipeline.devices import IMAGENET_MEAN, IMAGENET_STD
from pipeline.shards import decode_npy
from pipeline.video import ChunkInfo, open_source
from stages.features.dinov2 import Dinov2Encoder
from stages.features.geometry import stored_frame
from stages.hands.detect import HandDetector
from stages.hands.rows import COLUMNS, LANDMARKS_PX
from tests.conftest import phoenix_samples, prep
from tests.frames import decode_clip
from tests.stages.test_features import run_features, shard_samples

PHOENIX = (210, 260)  # width, height


def stripes(width: int, height: int) -> np.ndarray:
    """Row stripes in red, column stripes in green, a 10-px checker in blue: any shift, flip or
    stretch of rows or columns changes the pixels."""
    rows, cols = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [(rows * 7) % 256, (cols * 11) % 256, 255 * ((rows // 10 + cols // 10) % 2)], axis=-1
    )
    return frame.astype(np.uint8)


def pil_resize(frame: np.ndarray, side: int) -> np.ndarray:
    """``Image.fromarray(frame).resize((side, side))`` as the papers' pinned Pillow (9.0.1,
    10.4.0) computes it: Pillow 13 runs the vertical pass first on frames whose height shrinks
    more (python-pillow/Pillow#9549), the older ones always the horizontal pass first."""
    image = Image.fromarray(frame)
    if int(PIL.__version__.split(".")[0]) < 13:
        return np.asarray(image.resize((side, side)))
    return np.asarray(image.resize((side, image.height)).resize((side, side)))


def beyondgloss_input(frame: np.ndarray) -> torch.Tensor:
    """slt_dataset.py:101-120 for a dev/test phase: resize to 256x256, ToTensor, Normalize,
    then the central 224 (dataset/utils.py:17)."""
    from torchvision import transforms

    crop_rect, resize = (16, 16, 240, 240), (256, 256)
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    image = Image.fromarray(pil_resize(frame, resize[0]))
    tensor = transform(image).unsqueeze(0)
    return tensor[:, :, crop_rect[1] : crop_rect[3], crop_rect[0] : crop_rect[2]]


def sign2gpt_input(frame: np.ndarray) -> torch.Tensor:
    """image_lmdb_creator.py:66-69 (stored 256x256, JPEG at Pillow's default quality),
    lmdb_utils.py:32 (read back), then base_video_aug.py:55-65 for validation:
    albumentations 1.4.13 ``Resize(224, 224)`` (cv2 INTER_LINEAR), ``Normalize`` (float32
    ``(img - 255 mean) * (1 / (255 std))``), ``ToTensorV2`` (HWC -> CHW)."""
    temp = io.BytesIO()
    Image.fromarray(pil_resize(frame, 256)).save(temp, format="jpeg")
    temp.seek(0)
    stored = np.array(Image.open(io.BytesIO(temp.read())))
    small = cv2.resize(stored, (224, 224), interpolation=cv2.INTER_LINEAR)
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
    denominator = np.reciprocal(np.array([0.229, 0.224, 0.225], np.float32) * 255.0)
    normalised = (small.astype(np.float32) - mean) * denominator
    return torch.from_numpy(normalised.transpose(2, 0, 1)).unsqueeze(0)


def keep_aspect_input(frame: np.ndarray) -> torch.Tensor:
    """DINOv2's image processor with torchvision's tensor ops: shorter side 256 (bicubic,
    antialiased), centre 224, ToTensor's /255, Normalize."""
    from torchvision.transforms import v2

    image = torch.from_numpy(frame).permute(2, 0, 1).float()[None]
    resized = v2.functional.resize(image, [256], v2.InterpolationMode.BICUBIC, antialias=True)
    cropped = v2.functional.center_crop(resized, [224, 224]).clamp(0, 255) / 255.0
    return v2.functional.normalize(cropped, list(IMAGENET_MEAN), list(IMAGENET_STD))


REFERENCES = {
    "keep-aspect": keep_aspect_input,
    "squash-crop": beyondgloss_input,
    "squash-twice": sign2gpt_input,
}


@pytest.mark.parametrize("geometry", sorted(REFERENCES))
def test_dinov2_input_is_the_papers_own(geometry, tiny_dinov2):
    frame = stripes(*PHOENIX)
    encoder = Dinov2Encoder(str(tiny_dinov2), device="cpu", precision="fp32", geometry=geometry)
    encoder.load()
    batch = encoder.device_prepare(encoder.host_prepare(frame[None]))
    expected = REFERENCES[geometry](frame)
    assert batch.shape == expected.shape == (1, 3, 224, 224)
    assert torch.equal(batch, expected), float((batch - expected).abs().max())
    assert encoder(batch)["dinov2.npy"].shape == (1, 32)
    assert encoder.provenance()["preprocessing"]["frame_geometry"] == geometry
    if geometry == "keep-aspect":  # a stored 256 frame's centre 224 is DINOv2's input region
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        pixels = ((batch[0].permute(1, 2, 0) * std + mean) * 255).numpy()
        stored = stored_frame(frame, geometry, 256).astype(np.float32)
        assert stored.shape == (256, 256, 3)
        assert np.abs(pixels - stored[16:240, 16:240]).mean() < 2  # area vs bicubic filter
        assert np.abs(pixels - stored[17:241, 16:240]).mean() > 5  # one row off


def test_cli_stores_squashed_frames_and_says_so(tmp_path, tiny_dinov2):
    root = synthetic.write_phoenix14t(tmp_path / "phoenix", phoenix_samples(5, 3), size=PHOENIX)
    out = tmp_path / "out"
    flags = ("--frame-geometry", "squash-crop", "--with-frames", "--batch-size", 4)
    run_features("phoenix14t", root, out, tiny_dinov2, *flags)
    encoder = Dinov2Encoder(
        str(tiny_dinov2), device="cpu", precision="fp32", geometry="squash-crop"
    )
    encoder.load()
    checked = 0
    for split in ("train", "dev", "test"):
        for fields in shard_samples(out, split).values():
            meta = json.loads(fields["json"])
            assert meta["fields"]["frame_*.jpg"] == {
                "count": 3,
                "size": [256, 256],
                "frame_geometry": "squash-crop",
            }
            dinov2 = meta["provenance"]["features"]["dinov2"]["preprocessing"]
            assert dinov2["frame_geometry"] == "squash-crop" and dinov2["center_crop"] == 224
            pngs = sorted(root.rglob(f"{meta['id']}/*.png"))
            sources = np.stack([cv2.imread(str(p))[:, :, ::-1] for p in pngs])
            assert sources.shape == (3, 260, 210, 3)
            for position, source in enumerate(sources):
                data = np.frombuffer(fields[f"frame_{position:05d}.jpg"], np.uint8)
                stored = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
                squashed = pil_resize(np.ascontiguousarray(source), 256).astype(int)
                cropped = stored_frame(source, "keep-aspect", 256).astype(int)
                assert np.abs(stored - squashed).mean() < 1.5  # JPEG at quality 90
                assert np.abs(stored - cropped).mean() > 3 * np.abs(stored - squashed).mean()
            expected = encoder(encoder.host_prepare(sources))["dinov2.npy"]
            np.testing.assert_allclose(decode_npy(fields["dinov2.npy"]), expected, atol=2e-3)
            checked += 1
    assert checked == 5


def test_an_unknown_geometry_is_refused_in_one_line(tmp_path, tiny_dinov2):
    root = synthetic.write_phoenix14t(tmp_path / "phoenix", phoenix_samples(1, 2), size=(42, 52))
    where = ("--dataset", "phoenix14t", "--root", root, "--out", tmp_path / "out", "--quiet")
    result = prep("run", "--stage", "features", *where, "--frame-geometry", "squash")
    assert result.exit_code != 0
    assert "--frame-geometry must be one of keep-aspect, squash-crop, squash-twice" in result.output
    assert len(result.output.strip().splitlines()) == 1


def covered(frame_shape: tuple[int, int], geometry: str, model) -> np.ndarray:
    """(x0, y0, x1, y1): the source pixels the 224 input spans, read from the adapter's own
    output on a frame whose red and green values ramp with x and y."""
    height, width = frame_shape
    rows, cols = np.mgrid[0:height, 0:width]
    ramp = np.stack([cols * 255 / (width - 1), rows * 255 / (height - 1), 0 * rows], -1)
    encoder = Dinov2Encoder(str(model), device="cpu", geometry=geometry)  # no weights loaded
    batch = encoder.host_prepare(np.round(ramp).astype(np.uint8)[None])[0]
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    values = ((batch * std + mean) * 255).numpy()
    x, y = values[0] * (width - 1) / 255, values[1] * (height - 1) / 255
    return np.array([x.min(), y.min(), x.max(), y.max()])


def test_squash_crop_cuts_fewer_real_hands_than_keep_aspect(real_hand_clip, tiny_dinov2):
    frames = decode_clip(open_source(real_hand_clip)).frames
    height, width = frames.shape[1:3]
    detector = HandDetector(pose_fallback=False)
    rows = np.concatenate(
        [
            detector.detect(chunk, ChunkInfo(0, {"id": "c"}, np.arange(i, i + len(chunk))))
            for i, chunk in ((i, frames[i : i + 16]) for i in range(0, len(frames), 16))
        ]
    ).reshape(-1, COLUMNS)
    hands = rows[rows[:, 0] > 0][:, LANDMARKS_PX].reshape(-1, 21, 3)[:, :, :2]
    assert len(hands) >= 15
    # the regions by hand: 720x540 -> 341x256 (int(256 * 720 / 540)), centre 224 from row 58
    # and column 16; squashed -> 256x256, rows and columns 16-240
    by_hand = {
        "keep-aspect": np.array(
            [16 * width / 256, 58 * height / 341, 240 * width / 256, 282 * height / 341]
        ),
        "squash-crop": np.array([16 * width, 16 * height, 240 * width, 240 * height]) / 256,
    }
    shares = {}
    for geometry, region in by_hand.items():
        seen = covered((height, width), geometry, tiny_dinov2)
        assert np.abs(seen - region).max() < 5, (geometry, seen, region)  # a pixel is ~2.6 px
        x, y = hands[..., 0], hands[..., 1]
        cut = (x < region[0]) | (x > region[2]) | (y < region[1]) | (y > region[3])
        shares[geometry] = cut.any(axis=1).mean()
    print(f"hands losing a landmark to the 224 crop: {shares} of {len(hands)}")
    assert shares["squash-crop"] < shares["keep-aspect"]
