"""Per-frame hand features for the features stage: ``hands`` (detections) and ``hamer``.

Crops follow HaMeR's demo: a box around the hand, enlarged by 2.0, widened to HaMeR's 192:256
aspect, the longer side taken as a square, cut out and resized to 256x256, ImageNet-normalised.
A left hand is mirrored before the network (HaMeR only knows right hands); by default its
rotations are mirrored back (R -> M R M, M = diag(-1, 1, 1)) and its camera's x translation
negated. Where HaMeR's demo and Hands-On do otherwise (left rotations, one-sided hands, the
blur of large crops) is a choice: :mod:`stages.hands.hamer_conventions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from pipeline.devices import imagenet_normalise, torch_dtype
from pipeline.errors import PrepError
from pipeline.video import ChunkInfo
from stages.hands import hamer_conventions as conventions
from stages.hands.detect import HandDetector
from stages.hands.hamer import HamerConfig, load_hamer
from stages.hands.options import LEFT_UNMIRRORED, MISSING_ZEROS
from stages.hands.rows import BOX, COLUMNS

RESCALE = 2.0
CROP = 256
ASPECT = 192 / 256  # width : height the backbone sees
HAMER_URL = "https://github.com/geopavlakos/hamer (bash fetch_demo_data.sh -> _DATA/hamer_ckpts/checkpoints/hamer.ckpt)"


def square_box(box: np.ndarray) -> tuple[float, float, float]:
    """Centre and side of HaMeR's crop for a hand box (x0, y0, x1, y1), with numpy's types as
    HaMeR has them (float32 boxes; ``vitdet_dataset.py:38-40,55``, ``utils.py:14-33``), so the
    crop lands on the same sub-pixel grid."""
    box = np.asarray(box, np.float32)
    cx, cy = (box[2:4] + box[0:2]) / 2.0
    width, height = RESCALE * (box[2:4] - box[0:2]) / 200.0 * 200
    if height / width < 256 / 192:  # HaMeR's BBOX_SHAPE [192, 256]: width : height = ASPECT
        height = max(width * 256 / 192, height)
    else:
        width = max(height * 192 / 256, width)
    return cx, cy, max(np.array([width, height]).max(), 1.0)


def hand_crop(frame: np.ndarray, box: np.ndarray, mirror: bool) -> np.ndarray:
    """A 256x256 crop of the frame's dtype, zero outside the frame. A left hand's is cut from
    the mirrored frame around the mirrored centre, through the same three-point transform as
    HaMeR's ``generate_image_patch_cv2`` (``hamer/datasets/utils.py:81-129,317-361``), so both
    crops are HaMeR's to the bit (a direct mirrored warp lands a few pixels a level off)."""
    cx, cy, side = square_box(box)
    if mirror:
        frame = np.ascontiguousarray(frame[:, ::-1])
        cx = frame.shape[1] - cx - 1
    cx, cy, half = np.float64(cx), np.float64(cy), np.float32(side * 0.5)
    source = np.array([[cx, cy], [cx, cy + half], [cx + half, cy]]).astype(np.float32)
    target = np.array([[CROP / 2, CROP / 2], [CROP / 2, CROP], [CROP, CROP / 2]], np.float32)
    matrix = cv2.getAffineTransform(source, target)
    return cv2.warpAffine(
        frame, matrix, (CROP, CROP), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )


@dataclass
class HandCrops:
    """Prepared input of a chunk: both slots' crops per frame and which slots hold a hand."""

    crops: torch.Tensor  # uint8 [n, 2, 256, 256, 3]; float32 with the blur (unrounded crops)
    present: torch.Tensor  # bool [n, 2]

    def __len__(self) -> int:
        return len(self.present)

    def __getitem__(self, index: slice) -> "HandCrops":
        return HandCrops(self.crops[index], self.present[index])

    @classmethod
    def cat(cls, parts: list["HandCrops"]) -> "HandCrops":
        return cls(torch.cat([p.crops for p in parts]), torch.cat([p.present for p in parts]))


class HandsEncoder:
    """Field ``hands.npy``: float32 ``[T, 2, COLUMNS]`` (see ``stages.hands.detect``)."""

    fields = {"hands.npy": (2, COLUMNS)}

    def __init__(self, detector: HandDetector) -> None:
        self.detector = detector

    def load(self) -> None:
        self.detector.load()

    def host_prepare(self, frames: np.ndarray, info: ChunkInfo) -> torch.Tensor:
        return torch.from_numpy(self.detector.detect(frames, info))

    def device_prepare(self, prepared: torch.Tensor) -> torch.Tensor:
        return prepared

    def __call__(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        return {"hands.npy": batch.numpy()}

    def provenance(self) -> dict[str, Any]:
        d = self.detector
        return {
            "detector": d.source,
            "min_confidence": d.min_confidence,
            "mirrored_input": d.mirrored,
            "slots": ["left", "right"],
            "columns": "present, source (0 none, 1 hands, 2 pose, 3 keypoints file), score, box x0 y0 x1 y1 px, "
            "21x(x, y, z) px, 21x(x, y) normalised",
        }


class HamerEncoder:
    """Fields ``hamer.npy`` (float ``[T, 288]``: left then right ``hand_pose`` 15x3x3, then left
    then right ``global_orient`` 3x3; zeros where a hand is missing) and ``hamer_shape.npy``
    (``[T, 2, 13]``: per slot ``betas`` (10) and weak-perspective ``cam`` (3))."""

    fields = {"hamer.npy": (288,), "hamer_shape.npy": (2, 13)}

    def __init__(
        self,
        detector: HandDetector,
        checkpoint: str | None,
        config: str | None,
        *,
        device: str,
        precision: str,
        crop_batch: int = 32,
        tokens: bool = False,
        left_hands: str = LEFT_UNMIRRORED,
        missing_hand: str = MISSING_ZEROS,
        blur: bool = False,
    ) -> None:
        if not checkpoint:
            raise PrepError(
                f"the hamer feature needs HaMeR's checkpoint: get hamer.ckpt from {HAMER_URL} "
                "and pass --hamer /path/to/hamer.ckpt (MANO files are not needed)"
            )
        if not Path(checkpoint).is_file():
            raise PrepError(f"--hamer {checkpoint}: no such file; get hamer.ckpt from {HAMER_URL}")
        self.detector, self.checkpoint, self.config_path = detector, Path(checkpoint), config
        self.config = HamerConfig.from_file(Path(config)) if config else HamerConfig()
        self.device, self.precision, self.crop_batch = device, precision, crop_batch
        self.tokens = tokens
        conventions.check_choices(left_hands, missing_hand)
        self.left_hands, self.missing_hand, self.blur = left_hands, missing_hand, blur
        if tokens:  # the pooled backbone token per hand: [T, 2, embed_dim]
            self.fields = {**self.fields, "hamer_tokens.npy": (2, self.config.backbone.embed_dim)}
        self.model = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None}

    def load(self) -> None:
        self.detector.load()
        if self.model is None:
            self._dtype = torch_dtype(self.precision, self.device)
            self.model = load_hamer(self.checkpoint, self.config).to(self.device, self._dtype)

    def host_prepare(self, frames: np.ndarray, info: ChunkInfo) -> HandCrops:
        rows = self.detector.detect(frames, info)
        crops = np.zeros((len(frames), 2, CROP, CROP, 3), np.float32 if self.blur else np.uint8)
        for i, frame in enumerate(frames):
            for slot in (0, 1):
                if rows[i, slot, 0]:
                    box = rows[i, slot, BOX]
                    sigma = conventions.blur_sigma(square_box(box)[2], CROP) if self.blur else None
                    source = frame if sigma is None else conventions.blurred(frame, sigma)
                    crops[i, slot] = hand_crop(source, box, mirror=slot == 0)
        return HandCrops(torch.from_numpy(crops), torch.from_numpy(rows[:, :, 0] > 0))

    def device_prepare(self, prepared: HandCrops) -> HandCrops:
        return prepared

    @torch.inference_mode()
    def __call__(self, batch: HandCrops) -> dict[str, np.ndarray]:
        n = len(batch)
        pose, shape = torch.zeros(n, 2, 16, 3, 3), torch.zeros(n, 2, 13)
        tokens = torch.zeros(n, 2, self.config.backbone.embed_dim)
        frame_slot = batch.present.nonzero()
        for begin in range(0, len(frame_slot), self.crop_batch):
            index = frame_slot[begin : begin + self.crop_batch]
            images = normalise(batch.crops[index[:, 0], index[:, 1]].to(self.device), self._dtype)
            out = {
                k: v.float().cpu() for k, v in self.model(images, return_tokens=self.tokens).items()
            }
            rotations = torch.cat([out["global_orient"], out["hand_pose"]], 1)
            left = index[:, 1] == 0
            rotations[left] = conventions.left_rotations(rotations[left], self.left_hands)
            out["cam"][left, 1] = -out["cam"][left, 1]  # HaMeR demo.py:136-138
            pose[index[:, 0], index[:, 1]] = rotations
            shape[index[:, 0], index[:, 1]] = torch.cat([out["betas"], out["cam"]], 1)
            if self.tokens:
                tokens[index[:, 0], index[:, 1]] = out["backbone_pooled"]
        pose = conventions.fill_missing(pose, batch.present, self.missing_hand)
        hamer = torch.cat([pose[:, :, 1:].reshape(n, -1), pose[:, :, 0].reshape(n, -1)], 1)
        rows = {"hamer.npy": hamer.numpy(), "hamer_shape.npy": shape.numpy()}
        return {**rows, "hamer_tokens.npy": tokens.numpy()} if self.tokens else rows

    def provenance(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.name,
            "config": self.config.as_dict(),
            "rescale": RESCALE,
            "crop": CROP,
            **conventions.describe(self.left_hands, self.missing_hand, self.blur),
            "layout": "hamer.npy: hand_pose left, right (15x3x3 each), global_orient left, right (3x3 each)",
            "dtype": str(torch_dtype(self.precision, self.device)).removeprefix("torch."),
        }


def normalise(crops: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 ``[N, 256, 256, 3]`` -> ImageNet-normalised ``[N, 3, 256, 256]``."""
    return imagenet_normalise(crops.permute(0, 3, 1, 2).float() / 255.0).to(dtype)
