"""The features stage's options: which per-frame features, models, batching and shards."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.devices import DEVICE_HELP, PRECISION_CHOICES, PRECISION_HELP
from pipeline.errors import PrepError
from pipeline.stage import option
from stages.features.dinov2 import POOLINGS
from stages.features.geometry import GEOMETRIES
from stages.hands.options import (
    HAMER_BLUR_FLAG,
    HAMER_BLUR_HELP,
    HAMER_LEFT_HANDS_HELP,
    HAMER_MISSING_HAND_HELP,
    HAND_CONFIDENCE_HELP,
    KEYPOINTS_HELP,
    MIRRORED_FLAG,
    MIRRORED_HELP,
    POSE_FALLBACK_FLAG,
    POSE_FALLBACK_HELP,
)

KNOWN_FEATURES = ("dinov2", "hands", "hamer", "pose")


@dataclass(frozen=True)
class FeaturesOptions:
    features: str = option(
        "dinov2", "Comma list of per-frame features: dinov2, hands, hamer, pose."
    )
    dinov2: str = option(
        "facebook/dinov2-small",
        "DINOv2 folder (save_pretrained) or cached Hugging Face id (default: facebook/dinov2-small).",
    )
    dinov2_pooling: str = option(
        "cls", "Per-frame vector: cls, patch-mean or cls+patch-mean.", choices=POOLINGS
    )
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP, choices=PRECISION_CHOICES)
    batch_size: int = option(64, "Frames per model batch, packed across clips.", min=1)
    decode_workers: int = option(4, "Clips decoded ahead in parallel threads.", runtime=True, min=1)
    shard_size: str = option("1GB", "Start a new tar past this size, e.g. 1GB, 500MB.")
    shard_clips: int = option(512, "Clips per work unit; a unit writes one or more tars.", min=1)
    with_frames: bool = option(
        False,
        "Also store each clip's frames as JPEGs (for end-to-end fine-tuning).",
        flag="--with-frames/--no-frames",
    )
    frame_size: int = option(256, "Side of the stored square frames.", min=16)
    jpeg_quality: int = option(90, "JPEG quality of stored frames.", min=1, max=100)
    frame_geometry: str = option(
        "keep-aspect",
        "What DINOv2 and the stored frames see of each frame: keep-aspect (shorter side to "
        "256, centre 224), squash-crop (BeyondGloss: whole frame to 256x256 by Pillow bicubic, "
        "centre 224) or squash-twice (Sign2GPT: 256x256 by Pillow, a JPEG at quality 75, "
        "then 224x224 by OpenCV linear; no crop).",
        choices=GEOMETRIES,
    )
    hamer: str | None = option(
        None, "HaMeR checkpoint (hamer.ckpt or a converted .safetensors) for --features hamer."
    )
    hamer_config: str | None = option(
        None, "JSON of HaMeR architecture sizes, for checkpoints other than the released one."
    )
    hamer_left_hands: str = option("unmirrored", HAMER_LEFT_HANDS_HELP)
    hamer_missing_hand: str = option("zeros", HAMER_MISSING_HAND_HELP)
    hamer_blur: bool = option(False, HAMER_BLUR_HELP, flag=HAMER_BLUR_FLAG)
    hand_confidence: float = option(0.5, HAND_CONFIDENCE_HELP, min=0.0, max=1.0)
    pose_fallback: bool = option(True, POSE_FALLBACK_HELP, flag=POSE_FALLBACK_FLAG)
    hands_mirrored: bool = option(False, MIRRORED_HELP, flag=MIRRORED_FLAG)
    hamer_tokens: bool = option(
        False,
        "Also store each hand's mean-pooled HaMeR backbone token (1280-d).",
        flag="--hamer-tokens/--no-hamer-tokens",
    )
    hand_keypoints: str | None = option(None, KEYPOINTS_HELP)
    pose_normalise: str = option(
        "none",
        "pose.npy coordinates: none (pixels) or shoulders (per frame: from the shoulders' "
        "midpoint, in shoulder widths).",
    )
    pose_face: str = option(
        "none", "Face points added to pose: none, lips (40) or contours (128 of the face mesh)."
    )
    pose_signer: str = option(
        "central",
        "Whom pose follows among several people: central (largest, most central face; other "
        "faces masked) or mediapipe (MediaPipe's own pick).",
    )
    pose_files: bool = option(
        False,
        "Also write one pose-format .pose file per clip under <out>/pose/<split>/.",
        flag="--pose-files/--no-pose-files",
    )
    pose_keypoints: str | None = option(
        None,
        "Folder of <id>.npy COCO-WholeBody keypoints ([T,133,3]: x, y px, score; one row per "
        "clip frame) to use for pose instead of MediaPipe.",
    )

    def feature_list(self) -> list[str]:
        names = [n.strip() for n in self.features.split(",") if n.strip()]
        unknown = [n for n in names if n not in KNOWN_FEATURES]
        if unknown or not names:
            raise PrepError(
                f"--features takes a comma list of {', '.join(KNOWN_FEATURES)}; got {self.features!r}"
            )
        return names
