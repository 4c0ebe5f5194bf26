"""Hands: detection and tracking (MediaPipe), and our HaMeR network that loads the official
checkpoint without running its pickle. Used by the features stage (``--features hands,hamer``).

Public API: :func:`load_hamer` (``forward([B, 3, 256, 256])`` -> ``global_orient``,
``hand_pose``, ``betas``, ``cam``), :class:`HamerConfig`, :func:`convert_to_safetensors`.
"""

from stages.hands.hamer import Hamer, HamerConfig, convert_to_safetensors, load_hamer

__all__ = ["Hamer", "HamerConfig", "convert_to_safetensors", "load_hamer"]
