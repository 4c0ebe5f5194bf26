"""Which points ``pose.npy`` holds, in which order, and how COCO-WholeBody keypoints map onto them.

The order is MediaPipe Holistic's, with the components in a fixed sequence: the body's 33
``POSE_LANDMARKS``, the signer's ``LEFT_HAND_LANDMARKS`` (21), ``RIGHT_HAND_LANDMARKS`` (21),
then, with ``--pose-face``, a subset of the 468-point face mesh (``FACE_LANDMARKS``, points named
by their mesh index, as pose-format names them). Left and right are the person's own sides.

Names and limbs are spelled out here rather than read from MediaPipe so that keypoints made
elsewhere (``--pose-keypoints``) and the ``.pose`` files need no MediaPipe; a test compares them
with MediaPipe's own tables. Only the face subsets come from MediaPipe's face-mesh tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BODY_POINTS = tuple(
    """NOSE LEFT_EYE_INNER LEFT_EYE LEFT_EYE_OUTER RIGHT_EYE_INNER RIGHT_EYE RIGHT_EYE_OUTER
    LEFT_EAR RIGHT_EAR MOUTH_LEFT MOUTH_RIGHT LEFT_SHOULDER RIGHT_SHOULDER LEFT_ELBOW RIGHT_ELBOW
    LEFT_WRIST RIGHT_WRIST LEFT_PINKY RIGHT_PINKY LEFT_INDEX RIGHT_INDEX LEFT_THUMB RIGHT_THUMB
    LEFT_HIP RIGHT_HIP LEFT_KNEE RIGHT_KNEE LEFT_ANKLE RIGHT_ANKLE LEFT_HEEL RIGHT_HEEL
    LEFT_FOOT_INDEX RIGHT_FOOT_INDEX""".split()
)
HAND_POINTS = tuple(
    """WRIST THUMB_CMC THUMB_MCP THUMB_IP THUMB_TIP INDEX_FINGER_MCP INDEX_FINGER_PIP
    INDEX_FINGER_DIP INDEX_FINGER_TIP MIDDLE_FINGER_MCP MIDDLE_FINGER_PIP MIDDLE_FINGER_DIP
    MIDDLE_FINGER_TIP RING_FINGER_MCP RING_FINGER_PIP RING_FINGER_DIP RING_FINGER_TIP PINKY_MCP
    PINKY_PIP PINKY_DIP PINKY_TIP""".split()
)


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(i) for i in pair.split("-")) for pair in text.split())


BODY_LIMBS = _pairs(
    """0-1 0-4 1-2 2-3 3-7 4-5 5-6 6-8 9-10 11-12 11-13 11-23 12-14 12-24 13-15 14-16 15-17
    15-19 15-21 16-18 16-20 16-22 17-19 18-20 23-24 23-25 24-26 25-27 26-28 27-29 27-31 28-30
    28-32 29-31 30-32"""
)  # MediaPipe's POSE_CONNECTIONS, sorted
HAND_LIMBS = _pairs(
    """0-1 0-5 0-17 1-2 2-3 3-4 5-6 5-9 6-7 7-8 9-10 9-13 10-11 11-12 13-14 13-17 14-15 15-16
    17-18 18-19 19-20"""
)  # MediaPipe's HAND_CONNECTIONS, sorted
BODY, HAND = len(BODY_POINTS), len(HAND_POINTS)
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
FACE_SUBSETS = ("none", "lips", "contours")

# COCO-WholeBody 133 (MMPose, rtmlib, Uni-Sign): 0-16 COCO body, 17-22 feet (left big toe,
# left small toe, left heel, right big toe, right small toe, right heel), 23-90 the 68 face
# points of 300-W (36-41 the person's right eye, 42-47 the left; 48 and 54 the right and left
# mouth corners), 91-111 the left hand, 112-132 the right hand (both in MediaPipe's hand order).
WHOLEBODY_POINTS = 133
_FACE68, _LEFT_HAND, _RIGHT_HAND = 23, 91, 112
WHOLEBODY_TO_BODY = (
    0,  # nose
    _FACE68 + 42,  # left eye inner: the left eye's inner corner
    1,
    _FACE68 + 45,  # left eye outer
    _FACE68 + 39,  # right eye inner
    2,
    _FACE68 + 36,  # right eye outer
    3,
    4,
    _FACE68 + 54,  # mouth left: the left mouth corner
    _FACE68 + 48,  # mouth right
    5,
    6,
    7,
    8,
    9,
    10,
    _LEFT_HAND + 17,  # left pinky: the pinky's knuckle (MCP), where BlazePose puts it
    _RIGHT_HAND + 17,
    _LEFT_HAND + 5,  # left index: the index finger's knuckle (MCP)
    _RIGHT_HAND + 5,
    _LEFT_HAND + 2,  # left thumb: the thumb's MCP (an approximation of BlazePose's point)
    _RIGHT_HAND + 2,
    11,
    12,
    13,
    14,
    15,
    16,
    19,  # left heel
    22,  # right heel
    17,  # left foot index: the big toe
    20,  # right foot index
)
WHOLEBODY_TO_HANDS = tuple(range(_LEFT_HAND, _LEFT_HAND + HAND)) + tuple(
    range(_RIGHT_HAND, _RIGHT_HAND + HAND)
)


@dataclass(frozen=True)
class Component:
    """One pose-format component: its name, point names and limbs (pairs of its own indices)."""

    name: str
    points: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PointLayout:
    """The points of ``pose.npy``: the components in order and, for the face, the mesh indices."""

    face: str = "none"
    face_mesh: tuple[int, ...] = ()  # the face-mesh indices kept, ascending

    @classmethod
    def with_face(cls, face: str) -> PointLayout:
        if face == "none":
            return cls()
        return cls(face, face_subset(face))

    @property
    def components(self) -> tuple[Component, ...]:
        body = Component("POSE_LANDMARKS", BODY_POINTS, BODY_LIMBS)
        hands = tuple(
            Component(f"{side}_HAND_LANDMARKS", HAND_POINTS, HAND_LIMBS)
            for side in ("LEFT", "RIGHT")
        )
        if not self.face_mesh:
            return (body, *hands)
        local = {mesh: i for i, mesh in enumerate(self.face_mesh)}
        limbs = tuple(
            sorted(
                (local[a], local[b]) for a, b in face_limbs(self.face) if a in local and b in local
            )
        )
        face = Component("FACE_LANDMARKS", tuple(str(i) for i in self.face_mesh), limbs)
        return (body, *hands, face)

    @property
    def count(self) -> int:
        return BODY + 2 * HAND + len(self.face_mesh)

    def describe(self) -> list[dict]:
        """``[{component, start, count}]`` for the provenance: where each part lies in ``K``."""
        parts, start = [], 0
        for component in self.components:
            parts.append(
                {"component": component.name, "start": start, "count": len(component.points)}
            )
            start += len(component.points)
        return parts


def face_limbs(face: str) -> frozenset:
    """MediaPipe's face-mesh connections of a subset (``lips`` or ``contours``)."""
    from mediapipe.python.solutions import face_mesh_connections as connections

    return connections.FACEMESH_LIPS if face == "lips" else connections.FACEMESH_CONTOURS


def face_subset(face: str) -> tuple[int, ...]:
    """The mesh indices of a face subset: ``lips`` 40 points, ``contours`` 128 (lips, eyes,
    eyebrows and the face's oval), ascending."""
    return tuple(sorted({p for limb in face_limbs(face) for p in limb}))


def wholebody_points(points: np.ndarray) -> np.ndarray:
    """COCO-WholeBody ``[n, 133, 3]`` (x, y px, score) -> ``[n, 75, 4]`` rows (x, y, z=0, conf)."""
    picked = points[:, list(WHOLEBODY_TO_BODY + WHOLEBODY_TO_HANDS)]
    rows = np.zeros((len(points), BODY + 2 * HAND, 4), np.float32)
    rows[:, :, :2] = picked[:, :, :2]
    rows[:, :, 3] = picked[:, :, 2]
    return rows
