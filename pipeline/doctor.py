"""``prep doctor``: what this machine has (libraries, device, models, backends) and whether the
chosen configuration can run, before any work starts.

It only looks: files, package metadata, the local Hugging Face cache and ``torch.cuda``. No
model is loaded, nothing is downloaded. The framework owns what every run needs (its libraries,
the video decoders, the device) and the report's format; what a stage needs is asked of the
stage itself (:meth:`pipeline.stage.Stage.doctor_checks`) through the registry, so a stage added
by a plug-in is checked without this module knowing its name or options.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.contract import Check
from pipeline.errors import PrepError
from pipeline.models import locate_model

FRAMEWORK_LIBRARIES = (
    "prep",
    "torch",
    "torchvision",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "accelerate",
    "numpy",
    "pyarrow",
    "av",
    "opencv-python-headless",
    "webdataset",
    "wids",
)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_folder(module: str) -> Path | None:
    """Where an installed package lives, found without importing (running) it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def libraries(stage_libraries: Iterable[tuple[str, ...]]) -> list[str]:
    """The framework's libraries, then each stage's, each named once (a library two stages
    use, e.g. one shared detector, is listed where it first appears)."""
    return list(dict.fromkeys([*FRAMEWORK_LIBRARIES, *(n for s in stage_libraries for n in s)]))


def library_checks(names: Iterable[str]) -> list[Check]:
    return [
        Check("library", name, version is not None, version or "not installed")
        for name in names
        for version in [package_version(name)]
    ] + [video_codec_check()]


def video_codec_check() -> Check:
    """Which common video codecs this machine can decode (a clip in another is quarantined as
    ``unsupported_codec``, naming its codec)."""
    from pipeline.video_common import COMMON_CODECS, decodable_codecs

    found = decodable_codecs(COMMON_CODECS)
    missing = [c for c in COMMON_CODECS if c not in found]
    detail = ", ".join(found) + (f" (not: {', '.join(missing)})" if missing else "")
    return Check("video", "decoders", bool(found), detail)


def device_check(device: str, precision: str, needed: bool) -> Check:
    """Whether ``--device``/``--precision`` resolve here, next to what torch sees.

    Lives in the framework because device resolution does; each stage that computes on the
    device returns this check, and :func:`run_checks` keeps one line of it.
    """
    import torch

    from pipeline.devices import resolve_device, torch_dtype

    cuda = torch.cuda.is_available()
    seen = (
        f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
        if cuda
        else "no CUDA device"
    )
    build = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    try:
        resolved = resolve_device(device)
        dtype = str(torch_dtype(precision, resolved)).removeprefix("torch.")
    except PrepError as exc:
        return Check(
            "device",
            "device",
            False,
            f"{seen} ({build})",
            needed,
            f"{exc}; install a CUDA build of torch (Makefile TORCH=...) or pass --device cpu",
        )
    return Check(
        "device",
        "device",
        True,
        f"{resolved}, {dtype} (--device {device}; {seen}; {build})",
        needed,
    )


def hub_or_folder(reference: str) -> tuple[bool, str]:
    """A folder with config.json, or a Hugging Face id in the local cache (nothing fetched)."""
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file(), f"folder {folder}"
    if looks_like_path(reference):
        return False, f"no folder at {folder}"
    try:
        return True, f"hub cache {locate_model(reference, 'model', '').folder}"
    except PrepError:
        return False, f"{reference} is not in the local Hugging Face cache"


def looks_like_path(reference: str) -> bool:
    """Hugging Face ids are ``name`` or ``owner/name``; anything else is meant as a folder."""
    return reference.startswith(("/", ".", "~")) or reference.count("/") > 1


def merge_duplicates(checks: list[Check]) -> list[Check]:
    """One line per (area, component): several stages may return the same check (the device),
    and it is needed when any of them needs it. The first one keeps its place."""
    merged: dict[tuple[str, str], Check] = {}
    for check in checks:
        key = (check.area, check.component)
        first = merged.get(key)
        if first is None:
            merged[key] = check
        elif check.needed and not first.needed:
            merged[key] = dataclasses.replace(first, needed=True)
    return list(merged.values())


def run_checks(options: Mapping[str, Any], names: list[str]) -> list[Check]:
    """Every check: the libraries, then each registered stage's in run order; those of the
    chosen stages (``names``) are ``needed``."""
    from pipeline import registry  # lazily: the registry loads the stages, which import us

    stages = list(registry.registered().values())
    checks = library_checks(libraries(s.libraries for s in stages))
    for stage in stages:
        checks += stage.doctor_checks(options, stage.name in names)
    return merge_duplicates(checks)


def problems(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.needed and not c.ok]


def format_checks(checks: list[Check], stages: list[str]) -> str:
    rows = [("area", "component", "status", "detail")]
    rows += [(c.area, c.component, c.status, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {s:<{widths[2]}}  {d}" for a, b, s, d in rows]
    failing = problems(checks)
    verdict = (
        f"configuration for {', '.join(stages)}: can run"
        if not failing
        else f"configuration for {', '.join(stages)}: cannot run ({len(failing)} missing)"
    )
    return "\n".join(lines + ["", verdict])


def format_problems(checks: list[Check]) -> list[str]:
    """One line per missing piece: what it is and how to provide it."""
    return [f"prep: missing: {c.area} {c.component}: {c.fix}" for c in problems(checks)]
