"""Where the papers' HaMeR features and prep's defaults part ways, as choices a run records.

Three places, each read off the code the papers ran (HaMeR's demo, github.com/geopavlakos/hamer
at 3a01849, and Hands-On's extractor, github.com/JianHe0628/Hands-On at b21e08c, which
BeyondGloss credits for its HaMeR features):

- Left hands. HaMeR knows only right hands, so a left hand's crop is mirrored before the
  network (``hamer/datasets/vitdet_dataset.py:60,74-79``, ``flip = right == 0``). The demo keeps
  the network's rotations for that mirrored crop and only negates the camera's x translation
  (``demo.py:136-138``); Hands-On stores the rotations the same way
  (``data_prep/Extract_HaMeR_Single.py:164-169``; it keeps ``pred_cam`` raw, line 167, which
  only hamer_shape.npy would show). prep's default mirrors the rotations back
  (``M R M``, ``M = diag(-1, 1, 1)``), which changes the sign of 4 of each matrix's 9 entries:
  60 of the 135 left ``hand_pose`` values.
- A hand found on one side only. Hands-On duplicates the one hand it found into both halves of
  the 288-d vector, ``hand_pose`` and ``global_orient`` alike
  (``Extract_HaMeR_Single.py:191-194``); its camera and betas are kept per detected hand, not
  copied (lines 167, 170), and a frame with no hand stays all zeros (lines 147-152, 186-188).
- The anti-alias blur. Before cropping, HaMeR blurs the whole frame with a Gaussian when the
  crop's side exceeds 2.2 x 256 = 563.2 px, sigma = (side / 512 - 1) / 2
  (``vitdet_dataset.py:65-71``: ``skimage.filters.gaussian(..., channel_axis=2,
  preserve_range=True)``, i.e. ``scipy.ndimage.gaussian_filter`` on float64 with mode
  ``nearest`` and truncate 4.0); the crop is then cut from the float64 frame, so it is not
  rounded to 8 bits. prep does this with OpenCV (scikit-image is not a dependency): the same
  kernel, applied separably with replicated borders. Against scipy the blurred float64 frame
  differs by at most about 2e-13 (summation order); the float32 crops HaMeR feeds its network
  came out identical in every case tried (tests/stages/test_hamer_conventions.py). The whole
  frame is blurred, as in HaMeR: some tens of milliseconds per large hand on a 1080p frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pipeline.errors import PrepError
from stages.hands.options import (
    LEFT_AS_NETWORK,
    LEFT_HANDS,
    MISSING_COPY,
    MISSING_HAND,
)

BLUR_ABOVE = 1.1  # vitdet_dataset.py:70: blur when side / 256 / 2 exceeds this
TRUNCATE = 4.0  # skimage's gaussian leaves scipy's default: the kernel reaches 4 sigma
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))


def check_choices(left_hands: str, missing_hand: str) -> None:
    """A bad choice fails when the stage is built, before any work, with a one-line reason."""
    for flag, value, choices in (
        ("--hamer-left-hands", left_hands, LEFT_HANDS),
        ("--hamer-missing-hand", missing_hand, MISSING_HAND),
    ):
        if value not in choices:
            raise PrepError(f"{flag} takes one of {', '.join(choices)}; got {value!r}")


def left_rotations(rotations: torch.Tensor, convention: str) -> torch.Tensor:
    """``[N, 16, 3, 3]`` rotations the network gave for mirrored left-hand crops, as the
    convention wants them."""
    if convention == LEFT_AS_NETWORK:
        return rotations
    return MIRROR @ rotations @ MIRROR


def fill_missing(pose: torch.Tensor, present: torch.Tensor, mode: str) -> torch.Tensor:
    """``pose [n, 2, 16, 3, 3]`` per slot; with ``copy-other`` a frame with one hand gets that
    hand's rotations in the other slot too (Hands-On's duplication), otherwise unchanged."""
    if mode != MISSING_COPY:
        return pose
    pose = pose.clone()
    only_left, only_right = present[:, 0] & ~present[:, 1], present[:, 1] & ~present[:, 0]
    pose[only_left, 1] = pose[only_left, 0]
    pose[only_right, 0] = pose[only_right, 1]
    return pose


def blur_sigma(side: float, crop: int) -> float | None:
    """The Gaussian sigma HaMeR blurs the frame with before cutting a crop of ``side`` pixels
    down to ``crop``, or None when it does not blur."""
    factor = side * 1.0 / crop / 2.0  # numpy's types as vitdet_dataset.py:67-69 has them
    return float((factor - 1) / 2) if factor > BLUR_ABOVE else None  # scipy takes float(sigma)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian: radius ``int(4 sigma + 0.5)``, weights normalised to 1."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)
    return weights / weights.sum()


def blurred(frame: np.ndarray, sigma: float) -> np.ndarray:
    """The frame as float64, each channel blurred (borders replicated, HaMeR's ``nearest``);
    the kernel is symmetric, so OpenCV's correlation is scipy's convolution."""
    kernel = gaussian_kernel(sigma)
    return cv2.sepFilter2D(
        frame.astype(np.float64), cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REPLICATE
    )


def describe(left_hands: str, missing_hand: str, blur: bool) -> dict[str, str]:
    """The provenance lines of these choices, worded so a reader needs no option names."""
    left = (
        "mirrored in, rotations as the network gives them for the mirrored crop (HaMeR demo, "
        "Hands-On), cam x negated"
        if left_hands == LEFT_AS_NETWORK
        else "mirrored in, rotations mirrored back (M R M), cam x negated"
    )
    missing = (
        "a hand found on one side only fills both halves of hamer.npy (hand_pose and "
        "global_orient, as Hands-On); its hamer_shape and tokens stay zero for the other slot; "
        "no hand: zeros"
        if missing_hand == MISSING_COPY
        else "zeros"
    )
    blur = (
        f"frame blurred before cropping when the crop side exceeds {2 * BLUR_ABOVE} x 256 px: "
        "Gaussian sigma (side / 512 - 1) / 2, truncated at 4 sigma, borders replicated; "
        "such crops are not rounded to 8 bits (HaMeR vitdet_dataset.py)"
        if blur
        else "none"
    )
    return {"left_hands": left, "missing_hand": missing, "blur": blur}
