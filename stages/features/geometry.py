"""Frame geometry: which part of each frame DINOv2 sees, and how it is resampled to get there.

Papers disagree on the first step, and on a portrait frame (Phoenix is 210 wide, 260 high)
the choice decides whether raised hands stay in view:

- ``keep-aspect`` (prep's default, DINOv2's own image processor): the shorter side to 256
  (torch bicubic, antialiased, on float pixels), the central 224² crop. On Phoenix it keeps
  rows 38-222 of 260.
- ``squash-crop`` (BeyondGloss, elsobhano/BeyondGloss at 11eed23): the whole frame squashed to
  256² by ``img.resize(resize)`` (``slt_framework/dataset/slt_dataset.py:101,118``, size from
  ``dataset/utils.py:13-19``), i.e. Pillow's default filter, bicubic for RGB (Pillow 10.4.0
  pinned in ``slt_framework/environment.yml:17``), on uint8 pixels; then the central 224²
  (``dataset/utils.py:17``: offset ``(256 - 224) // 2``; ``slt_dataset.py:120``), after
  ``ToTensor`` and ``Normalize`` (``slt_dataset.py:102-105,119``). On Phoenix: rows 16-244.
- ``squash-twice`` (Sign2GPT, ryanwongsa/Sign2GPT at 5555935): frames stored squashed to 256²
  by ``Image.fromarray(frame).resize((256, 256))`` (``scripts/csldaily/image_lmdb_creator.py:
  66``: Pillow's default, bicubic; Pillow 9.0.1 pinned in ``environment.yml:16``) as JPEGs at
  Pillow's default quality 75 (``:67-69``), read back by ``np.array(Image.open(...))``
  (``dataloaders/data_utils/lmdb_utils.py:32``), then at evaluation ``A.Resize(224, 224)``
  (``augmentation/video/base_video_aug.py:55-57``; albumentations 1.4.13 pinned,
  ``environment.yml:6``: ``cv2.resize`` with its default ``cv2.INTER_LINEAR``,
  ``albumentations/augmentations/geometric/resize.py:274-291`` and ``functional.py:344-349``
  there) and ``A.Normalize`` (``base_video_aug.py:58-64``; albumentations 1.4.13
  ``transforms.py:310-326`` with albucore 0.0.13 ``functions.py:235-263``: a float32 lookup
  table ``(x - 255 mean) * (1 / (255 std))`` per channel). No crop: the whole frame is seen.
  The JPEG step is kept: it moves the 224² input by 2.4 levels on average, up to 84 at
  coloured edges (chroma subsampling); its bytes depend on the libjpeg build.

``--with-frames`` stores each frame at the geometry's step before its 224
(:func:`stored_frame`): the central square of the shorter side at ``--frame-size`` for
``keep-aspect``, the whole frame squashed to ``--frame-size``² for the other two (at
``--jpeg-quality``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from pipeline.devices import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalise
from pipeline.errors import PrepError

KEEP_ASPECT, SQUASH_CROP, SQUASH_TWICE = "keep-aspect", "squash-crop", "squash-twice"
GEOMETRIES = (KEEP_ASPECT, SQUASH_CROP, SQUASH_TWICE)
SIGN2GPT_JPEG_QUALITY = 75  # image_lmdb_creator.py:68 saves with Pillow's default quality


def check_geometry(geometry: str) -> str:
    """``geometry`` if prep knows it; a user's typo is a one-line error naming the choices."""
    if geometry not in GEOMETRIES:
        raise PrepError(
            f"--frame-geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}"
        )
    return geometry


def resize_shorter(images, side: int):
    """Float ``[N, 3, H, W]`` -> the shorter side at ``side``, the longer one scaled and
    truncated as torchvision and the Hugging Face image processor round it (bicubic,
    antialiased; not clamped: bicubic overshoots)."""
    from torch.nn import functional as F

    height, width = images.shape[-2:]
    short, long = min(height, width), max(height, width)
    scaled_long = int(side * long / short)
    size = (side, scaled_long) if height <= width else (scaled_long, side)
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)


def centre_crop(images, crop: int):
    """The central ``crop``² of ``[..., H, W]``; an odd margin leaves its extra pixel at the
    bottom/right."""
    height, width = images.shape[-2:]
    top, left = (height - crop) // 2, (width - crop) // 2
    return images[..., top : top + crop, left : left + crop]


def centre_crop_hw(frame: np.ndarray, crop: int) -> np.ndarray:
    """The central ``crop``² of an ``[H, W, C]`` array, as :func:`centre_crop` places it."""
    top, left = (frame.shape[0] - crop) // 2, (frame.shape[1] - crop) // 2
    return frame[top : top + crop, left : left + crop]


def squash(frame: np.ndarray, side: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> the whole frame at ``side``² as both papers' code resizes it:
    ``PIL.Image.resize`` with no filter given, which is bicubic for RGB.

    Written as two one-axis passes, horizontal first, as the papers' pinned Pillow (9.0.1,
    10.4.0) runs every resize: Pillow 13 does the vertical pass first when the height shrinks
    much more than the width (python-pillow/Pillow#9549); on portrait 210x260 frames that
    changes 11% of the values, by up to 4 levels (up to 24 on noise), the uint8 result
    between the passes being rounded and clipped."""
    from PIL import Image

    image = Image.fromarray(frame)
    width, height = image.size
    if width != side:
        image = image.resize((side, height), Image.Resampling.BICUBIC)
    if height != side:
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(image)


def linear_resize(frame: np.ndarray, side: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> ``side``² by ``cv2.resize(..., INTER_LINEAR)``, albumentations'
    ``Resize`` default (and, like it, the frame itself when already that size)."""
    import cv2

    if frame.shape[:2] == (side, side):
        return frame
    return cv2.resize(frame, (side, side), interpolation=cv2.INTER_LINEAR)


def squashed_input(frames: np.ndarray, geometry: str, resize: int, crop: int) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` -> the uint8 ``[N, crop, crop, 3]`` pixels a squashing paper
    feeds its DINOv2 (``squash-crop`` or ``squash-twice``), computed on the CPU with the
    papers' own libraries, so the numbers are theirs on any device."""
    out = np.empty((len(frames), crop, crop, 3), np.uint8)
    for i, frame in enumerate(frames):
        small = squash(np.ascontiguousarray(frame), resize)
        if geometry == SQUASH_TWICE:
            out[i] = linear_resize(jpeg_round_trip(small, SIGN2GPT_JPEG_QUALITY), crop)
        else:
            out[i] = centre_crop_hw(small, crop)
    return out


def jpeg_round_trip(frame: np.ndarray, quality: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` saved as Pillow's JPEG at ``quality`` and decoded by Pillow, as
    Sign2GPT's LMDB creator writes a frame and its dataloader reads it back."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="jpeg", quality=quality)
    buffer.seek(0)
    return np.array(Image.open(buffer))


def albumentations_lut() -> np.ndarray:
    """float32 ``[3, 256]``: what ``A.Normalize`` maps each uint8 value to per channel
    (albumentations 1.4.13 ``transforms.py:310-313`` builds ``255 mean`` and
    ``1 / (255 std)`` in float32; albucore 0.0.13 ``functions.py:251`` the table)."""
    mean = np.array(IMAGENET_MEAN, np.float32) * 255.0
    denominator = np.reciprocal(np.array(IMAGENET_STD, np.float32) * 255.0)
    values = np.arange(256, dtype=np.float32)
    return ((values - mean.reshape(-1, 1)) * denominator.reshape(-1, 1)).astype(np.float32)


def normalise_squashed(pixels, geometry: str):
    """uint8 ``[N, crop, crop, 3]`` tensor -> float ``[N, 3, crop, crop]`` normalised as the paper
    does: torchvision's ``ToTensor`` + ``Normalize`` (BeyondGloss) or albumentations' lookup
    table (Sign2GPT). Same device as ``pixels``."""
    import torch

    images = pixels.permute(0, 3, 1, 2)
    if geometry == SQUASH_TWICE:
        lut = torch.from_numpy(albumentations_lut()).to(images.device)
        index = images.long()
        return torch.stack([lut[c][index[:, c]] for c in range(3)], dim=1)
    return imagenet_normalise(images.float() / 255.0)


def stored_frame(frame: np.ndarray, geometry: str, side: int) -> np.ndarray:
    """uint8 ``[side, side, 3]``: what ``--with-frames`` stores, the geometry's step before its
    224. ``keep-aspect`` scales the shorter side to ``side`` and keeps the central square, the
    region DINOv2's input comes from (with ``side`` 256, a stored frame's central 224² is DINOv2's
    input), by OpenCV's area filter: a tenth of the time of torch's bicubic on one frame. The
    squashing geometries squash the whole frame as both papers store it."""
    import cv2

    if geometry != KEEP_ASPECT:
        return squash(frame, side)
    height, width = frame.shape[:2]
    long = int(side * max(height, width) / min(height, width))  # as resize_shorter rounds
    size = (side, long) if height <= width else (long, side)
    scaled = cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(centre_crop_hw(scaled, side))


def describe(geometry: str, resize: int, crop: int) -> dict[str, Any]:
    """Provenance of DINOv2's input: each step in order, with the libraries whose versions
    decide the squashing geometries' exact pixels."""
    if geometry == KEEP_ASPECT:
        steps: dict[str, Any] = {
            "resize_shorter": resize,
            "center_crop": crop,
            "interpolation": "bicubic",
            "antialias": True,
        }
    else:
        import cv2
        import PIL

        steps = {"resize": [resize, resize], "interpolation": "pil-bicubic"}
        if geometry == SQUASH_CROP:
            steps["center_crop"] = crop
        else:
            steps["jpeg_quality"] = SIGN2GPT_JPEG_QUALITY  # a Pillow JPEG between the resizes
            steps |= {"then_resize": [crop, crop], "then_interpolation": "cv2-inter-linear"}
        steps["libraries"] = {"pillow": PIL.__version__, "opencv": cv2.__version__}
    normalise = "albumentations-lut" if geometry == SQUASH_TWICE else "torch"
    return {
        "frame_geometry": geometry,
        **steps,
        "normalise": normalise,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }
