"""The hand options shared by hand-captions and features, declared once: the registry requires
an option two stages declare to agree, and one wording keeps ``--help`` consistent."""

from __future__ import annotations

HAND_CONFIDENCE_HELP = "MediaPipe detection/tracking confidence."
POSE_FALLBACK_HELP = "Boxes from body-pose wrists where no hand is found (default: on)."
POSE_FALLBACK_FLAG = "--pose-fallback/--no-pose-fallback"
MIRRORED_HELP = "The video is mirrored (selfie); decides which hand is the signer's left."
MIRRORED_FLAG = "--hands-mirrored/--hands-not-mirrored"
KEYPOINTS_HELP = (
    "Folder of <id>.npy hand keypoints ([T,133,3] COCO-WholeBody or [T,2,K,3]) "
    "to use instead of MediaPipe."
)
