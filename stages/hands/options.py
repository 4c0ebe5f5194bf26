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

# HaMeR conventions (features only; what each choice does: stages.hands.hamer_conventions)
LEFT_UNMIRRORED, LEFT_AS_NETWORK = "unmirrored", "as-network"
LEFT_HANDS = (LEFT_UNMIRRORED, LEFT_AS_NETWORK)
MISSING_ZEROS, MISSING_COPY = "zeros", "copy-other"
MISSING_HAND = (MISSING_ZEROS, MISSING_COPY)
HAMER_LEFT_HANDS_HELP = (
    "HaMeR rotations of the signer's left hand, whose crop the network sees mirrored: "
    "unmirrored (mirrored back, M R M) or as-network (kept, as HaMeR's demo and Hands-On do); "
    "both negate the camera's x."
)
HAMER_MISSING_HAND_HELP = (
    "hamer.npy where only one hand is found: zeros for the other, or copy-other (Hands-On: "
    "the found hand's rotations fill both halves)."
)
HAMER_BLUR_HELP = (
    "Blur the frame before cutting a HaMeR crop whose side exceeds 563 px, as HaMeR's demo "
    "does (default off: only hands over about 280 px need it, rare in sign language video, "
    "and off keeps earlier features unchanged)."
)
HAMER_BLUR_FLAG = "--hamer-blur/--no-hamer-blur"
