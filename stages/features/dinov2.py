"""DINOv2 adapter: frames in, one vector per frame out, through transformers' ``Dinov2Model``.

Preprocessing follows ``--frame-geometry`` (:mod:`stages.features.geometry`). ``keep-aspect``,
DINOv2's own image processor: resize the shorter side to 256 (bicubic, antialiased), centre-crop
224, scale to [0, 1], ImageNet mean/std, on batched tensors: in the decode threads on CPU, on
the device on GPU. ``squash-crop`` (BeyondGloss) and ``squash-twice`` (Sign2GPT) resize with the
papers' own libraries (Pillow, OpenCV) in the decode threads, whatever the device, and only
the normalisation of the 224² uint8 pixels runs on the device.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipeline.devices import imagenet_normalise, torch_dtype
from pipeline.errors import PrepError
from pipeline.models import locate_model
from stages.features.geometry import (
    KEEP_ASPECT,
    centre_crop,
    check_geometry,
    describe,
    normalise_squashed,
    resize_shorter,
    squashed_input,
)

log = logging.getLogger(__name__)

POOLINGS = ("cls", "patch-mean", "cls+patch-mean")


class Dinov2Encoder:
    """``load()`` once per worker, ``host_prepare`` in decode threads, ``__call__`` per batch."""

    field = "dinov2.npy"

    def __init__(
        self,
        reference: str,
        *,
        pooling: str = "cls",
        device: str = "cpu",
        precision: str = "auto",
        resize: int = 256,
        crop: int = 224,
        geometry: str = KEEP_ASPECT,
    ) -> None:
        if pooling not in POOLINGS:
            raise PrepError(
                f"--dinov2-pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}"
            )
        if crop > resize:
            raise PrepError(f"DINOv2 crop {crop} is larger than the resize {resize}")
        self.location = locate_model(reference, "DINOv2 model", "--dinov2")
        self.pooling, self.device, self.precision = pooling, device, precision
        self.resize, self.crop = resize, crop
        self.geometry = check_geometry(geometry)
        self.model = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None}  # weights load in each worker, not in the parent

    def load(self) -> None:
        if self.model is not None:
            return
        import torch
        from transformers import Dinov2Model
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar covers the run; theirs would interleave

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise PrepError("--device cuda was asked for but torch sees no CUDA device")
        dtype = torch_dtype(self.precision, self.device)
        try:
            model = Dinov2Model.from_pretrained(
                self.location.folder, local_files_only=True, dtype=dtype
            )
        except (OSError, ValueError) as exc:
            raise PrepError(
                f"cannot load DINOv2 from {self.location.folder}: {exc}".splitlines()[0]
            ) from exc
        self.model = model.to(self.device).eval()
        self._dtype = dtype
        log.info(
            "DINOv2 %s (%s) on %s, %s",
            self.location.reference,
            self.location.revision,
            self.device,
            dtype,
        )

    @property
    def width(self) -> int:
        from transformers import AutoConfig

        hidden = AutoConfig.from_pretrained(
            self.location.folder, local_files_only=True, trust_remote_code=False
        ).hidden_size
        return hidden * (2 if self.pooling == "cls+patch-mean" else 1)

    def host_prepare(self, frames: np.ndarray, info: Any = None):
        """Decode-thread side: the full preprocessing on CPU; on GPU only a pinned uint8 tensor."""
        import torch

        if self.geometry != KEEP_ASPECT:  # Pillow/OpenCV on the CPU: the papers' own pixels
            frames = squashed_input(frames, self.geometry, self.resize, self.crop)
        tensor = torch.from_numpy(np.ascontiguousarray(frames))
        if self.device.startswith("cuda"):
            return tensor.pin_memory()
        return self._finish(tensor)

    def device_prepare(self, prepared):
        if self.device.startswith("cuda"):
            return self._finish(prepared.to(self.device, non_blocking=True))
        return prepared

    def _finish(self, tensor):
        """What is left on the device: the whole preprocessing for ``keep-aspect``, only the
        normalisation of already resized pixels for the squashing geometries."""
        if self.geometry == KEEP_ASPECT:
            return preprocess(tensor, self.resize, self.crop)
        return normalise_squashed(tensor, self.geometry)

    @property
    def fields(self) -> dict[str, tuple[int, ...]]:
        """What each frame yields: ``{shard field: per-frame shape}``."""
        return {self.field: (self.width,)}

    def __call__(self, batch) -> dict[str, np.ndarray]:
        """``[N, 3, crop, crop]`` normalised float tensor -> ``{"dinov2.npy": float32 [N, D]}``."""
        import torch

        with torch.inference_mode():
            hidden = self.model(pixel_values=batch.to(self._dtype)).last_hidden_state
            cls, patches = hidden[:, 0], hidden[:, 1:].mean(dim=1)
            out = {
                "cls": cls,
                "patch-mean": patches,
                "cls+patch-mean": torch.cat([cls, patches], 1),
            }[self.pooling]
            # a copy: a view of the CLS column would keep the whole [N, tokens, D] output alive
            return {self.field: np.ascontiguousarray(out.float().cpu().numpy())}

    def provenance(self) -> dict[str, Any]:
        dtype = str(torch_dtype(self.precision, self.device)).removeprefix("torch.")
        return {
            "model": self.location.reference,
            "revision": self.location.revision,
            "pooling": self.pooling,
            "dtype": dtype,
            "device_kind": self.device.split(":")[0],
            "preprocessing": describe(self.geometry, self.resize, self.crop),
        }


FLOAT_BYTES_AT_ONCE = 64 * 2**20  # full-size float frames alive at once: a 4K frame is 100 MB


def preprocess(frames, resize: int, crop: int):
    """uint8 ``[N, H, W, 3]`` tensor -> normalised float ``[N, 3, crop, crop]`` (same device).

    Frames go to float a few at a time (at most :data:`FLOAT_BYTES_AT_ONCE`), so a chunk of
    4K frames never exists as one float tensor; each frame's result is the same either way."""
    import torch

    per_frame = 4 * frames[0].numel() if len(frames) else 1
    step = max(1, FLOAT_BYTES_AT_ONCE // per_frame)
    if len(frames) <= step:
        return _preprocess(frames, resize, crop)
    return torch.cat(
        [_preprocess(frames[i : i + step], resize, crop) for i in range(0, len(frames), step)]
    )


def _preprocess(frames, resize: int, crop: int):
    images = resize_shorter(frames.permute(0, 3, 1, 2).float(), resize)
    return imagenet_normalise(centre_crop(images, crop).clamp_(0, 255) / 255.0)
