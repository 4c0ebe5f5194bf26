"""Which person the pose follows when several are visible: ours to choose, not MediaPipe's.

MediaPipe Holistic (like Pose) follows one person. Its person detector runs on the first frame,
and again whenever tracking is lost; it keeps the detection it scores highest, then follows that
person from frame to frame through the previous frame's landmarks. Which of several people it
takes thus depends on its detector's scores, not on size or place: shown the real hand clip's
person twice, equally large, one at the left edge and one in the middle, it follows the one at
the edge (``tests/stages/test_pose.py``).

``--pose-signer central`` (the default) makes the choice explicit. MediaPipe's face detector
(full-range model, several faces per frame) runs on every frame first:

* the signer is chosen at the first frame with a face: the face with the highest
  ``width x (1 - |centre x - frame centre x| / (frame width / 2))`` - the largest, weighted by
  how central it is (an equally large face in the middle beats one at the edge; a face at half
  the size in the middle beats one at the very edge);
* it is kept across frames: in each frame the face whose centre lies within one face width of
  the signer's last face is the signer (the nearest such), otherwise the signer is unseen this
  frame and its last face stays;
* every other face, lying at least 1.5 face widths from the signer's, is painted over (its box
  grown by a quarter, grey) in the frame Holistic sees, so Holistic's person detector finds no
  one else to start with or to jump to. Coordinates are unchanged by this, and a frame with a
  single face goes to Holistic untouched.

``--pose-signer mediapipe`` skips all of this and keeps MediaPipe's own choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAME_PERSON = 1.0  # a face within this many face widths of the signer's last face is the signer's
OTHER_PERSON = 1.5  # a face at least this many face widths away is someone else's: masked
MASK_GROW = 0.25  # each side of a masked face box grows by this share of its size
MASK_VALUE = 114  # the grey painted over other people's faces
SIGNER_CHOICES = ("central", "mediapipe")


def signer_score(box: np.ndarray, width: int) -> float:
    """Face width times horizontal centrality (1 in the middle of the frame, 0 at its edge)."""
    centre = (box[0] + box[2]) / 2
    centrality = max(0.0, 1.0 - abs(centre - width / 2) / (width / 2))
    return float(box[2] - box[0]) * centrality


@dataclass
class SignerTrack:
    """The signer's face box (x0, y0, x1, y1 px) as last seen in a clip; None before any face."""

    box: np.ndarray | None = None

    def others(self, faces: list[np.ndarray], width: int) -> list[np.ndarray]:
        """Update the signer from one frame's faces; returns the faces of other people."""
        if not faces:
            return []
        if self.box is None:
            scores = [signer_score(face, width) for face in faces]
            chosen: int | None = int(np.argmax(scores))  # ties: the first detected
        else:
            distances = [_distance(face, self.box) for face in faces]
            near = [i for i, d in enumerate(distances) if d < SAME_PERSON * _side(self.box)]
            chosen = min(near, key=lambda i: distances[i]) if near else None
        if chosen is not None:
            self.box = faces[chosen]
        far = OTHER_PERSON * _side(self.box)
        return [
            face for i, face in enumerate(faces) if i != chosen and _distance(face, self.box) >= far
        ]


def masked(frame: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
    """A copy of ``frame`` with each face box (grown by :data:`MASK_GROW`) painted grey."""
    out = frame.copy()
    height, width = frame.shape[:2]
    for x0, y0, x1, y1 in faces:
        grow_x, grow_y = MASK_GROW * (x1 - x0), MASK_GROW * (y1 - y0)
        left, top = max(0, int(np.floor(x0 - grow_x))), max(0, int(np.floor(y0 - grow_y)))
        right = min(width, int(np.ceil(x1 + grow_x)))
        bottom = min(height, int(np.ceil(y1 + grow_y)))
        out[top:bottom, left:right] = MASK_VALUE
    return out


def face_boxes(result, width: int, height: int) -> list[np.ndarray]:
    """MediaPipe face detections -> boxes (x0, y0, x1, y1 px), in the detector's order."""
    boxes = []
    for detection in result.detections or ():
        b = detection.location_data.relative_bounding_box
        x0, y0 = b.xmin * width, b.ymin * height
        boxes.append(np.array([x0, y0, x0 + b.width * width, y0 + b.height * height], np.float64))
    return boxes


def _side(box: np.ndarray) -> float:
    return max(float(box[2] - box[0]), 1.0)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2))
