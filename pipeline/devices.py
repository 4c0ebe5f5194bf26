"""Device and precision choices, and the ImageNet normalisation the vision models share."""

from __future__ import annotations

from pipeline.config import local_rank_from_environment
from pipeline.errors import PrepError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_CHOICES = PRECISIONS  # what --precision accepts (the options dataclasses declare it)
DEVICE_HELP = "auto, cpu or cuda[:N]."  # the --device of every stage that runs a model
PRECISION_HELP = "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees one, else ``cpu``; a CUDA request without CUDA is an error.

    ``auto`` and a bare ``cuda`` pin each rank of a launch to its own GPU (``cuda:LOCAL_RANK``,
    modulo the GPUs this process sees), so ranks on one node never share a device.
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise PrepError(f"--device {device} was asked for but torch sees no CUDA device")
        return rank_gpu(torch.cuda.device_count()) if device == "cuda" else device
    raise PrepError(f"--device must be auto, cpu or cuda[:N], got {device!r}")


def rank_gpu(device_count: int, local_rank: int | None = None) -> str:
    """``cuda:LOCAL_RANK`` (wrapped to the visible GPUs) under a launcher, else plain ``cuda``."""
    local_rank = local_rank_from_environment() if local_rank is None else local_rank
    if local_rank is None or device_count < 1:
        return "cuda"
    return f"cuda:{local_rank % device_count}"


def torch_dtype(precision: str, device: str):
    """``auto`` is bf16 on GPU and fp32 on CPU."""
    import torch

    if precision not in PRECISIONS:
        raise PrepError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def imagenet_normalise(images):
    """Float ``[N, 3, H, W]`` in [0, 1] -> ImageNet mean/std normalised (same device)."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
