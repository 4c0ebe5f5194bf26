"""``prep doctor`` checks of the features stage: ``--features``, and for each chosen feature
what it needs (DINOv2 weights, hand landmarks, the HaMeR checkpoint, MediaPipe Holistic or pose
keypoints), plus the device.

Checks of features not chosen are still shown (not needed), so one ``prep doctor`` tells what
this machine could extract.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.doctor import Check, device_check, looks_like_path
from pipeline.errors import PrepError
from pipeline.models import WEIGHT_FILES, locate_model
from stages.hands.checks import mediapipe_check
from stages.pose.checks import pose_checks

AREA = "features"


def dinov2_check(reference: str, needed: bool) -> Check:
    """A ``save_pretrained`` folder with config and weights, or a hub id in the local cache."""
    name, folder = "DINOv2", Path(reference).expanduser()
    where = (
        "place a DINOv2 folder written by save_pretrained (config.json + model.safetensors; e.g. "
        f"`huggingface-cli download facebook/dinov2-small --local-dir {folder}` on a machine with internet) at "
        f"{folder}, or pass --dinov2 /path/to/that/folder"
    )
    if folder.is_dir():
        weights = [w for w in WEIGHT_FILES if (folder / w).is_file()]
        ok = (folder / "config.json").is_file() and bool(weights)
        return Check(
            AREA, name, ok, f"{folder} ({', '.join(weights) or 'no weights'})", needed, where
        )
    if looks_like_path(reference):
        return Check(AREA, name, False, f"no folder at {folder}", needed, where)
    try:
        # a hub id: no hashing, nothing fetched
        location = locate_model(reference, "DINOv2 model", "--dinov2")
    except PrepError as exc:
        return Check(
            AREA, name, False, f"{reference} not in the local Hugging Face cache", needed, str(exc)
        )
    return Check(AREA, name, True, f"{reference} (hub cache, revision {location.revision})", needed)


def hamer_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The HaMeR checkpoint (and its optional architecture config); without ``--hamer`` the line
    is shown as not used unless HaMeR features were asked for."""
    from stages.hands.encoders import HAMER_URL

    checkpoint, config = options["hamer"], options["hamer_config"]
    if not checkpoint:
        return [
            Check(
                AREA,
                "HaMeR",
                False,
                "no --hamer given",
                needed,
                f"get hamer.ckpt from {HAMER_URL} and pass --hamer /path/to/hamer.ckpt",
                applies=needed,
            )
        ]
    path = Path(checkpoint).expanduser()
    fix = f"place HaMeR's hamer.ckpt (from {HAMER_URL}) or its `prep convert-hamer` .safetensors at {path}"
    size = f"{path.stat().st_size / 2**20:.0f} MiB" if path.is_file() else "no such file"
    checks = [Check(AREA, "HaMeR", path.is_file(), f"{path} ({size})", needed, fix)]
    if config:
        config_path = Path(config).expanduser()
        checks.append(
            Check(
                AREA,
                "HaMeR config",
                config_path.is_file(),
                str(config_path),
                needed,
                f"place the JSON of architecture sizes at {config_path}, or drop --hamer-config",
            )
        )
    return checks


def doctor_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The stage's checks; each feature's are needed only when that feature is chosen. The
    device is always returned: every feature runs a network on it."""
    from stages.features.options import FeaturesOptions

    try:
        chosen = FeaturesOptions(features=options["features"]).feature_list()
    except PrepError as exc:
        checks = [Check(AREA, "--features", False, str(options["features"]), needed, str(exc))]
    else:
        hands = needed and bool({"hands", "hamer"} & set(chosen))
        checks = [
            dinov2_check(options["dinov2"], needed and "dinov2" in chosen),
            mediapipe_check(AREA, options["hand_keypoints"], hands),
            *hamer_checks(options, needed and "hamer" in chosen),
            *pose_checks(AREA, options, needed and "pose" in chosen),
        ]
    return checks + [device_check(options["device"], options["precision"], needed)]
