"""The ``kinematic`` captioner: a deterministic description of a chunk from hand detections.

No weights: it reads the hand rows of ``stages.hands.detect`` (MediaPipe landmarks, boxes) and
says, per hand, whether it is seen, where it is (face, chest or waist height; at the bottom
edge), where it goes (rises, lowers, moves toward the signer's left or right; slightly,
clearly, far; slowly or quickly), whether it opens or closes, and whether the hands touch.
Heights are parts of the frame, not of a detected body: a baseline, not a VideoLLM.
"""

from __future__ import annotations

import numpy as np

from stages.hands.rows import BOX, LANDMARKS, SOURCE_HANDS

VERSION = "kinematic-1"
FINGERTIPS, WRIST, MIDDLE_BASE = (4, 8, 12, 16, 20), 0, 9
NAMES = ("left", "right")


def describe_chunk(rows: np.ndarray, width: int, height: int, fps: float) -> str:
    """``rows``: ``[n, 2, COLUMNS]`` for the chunk's frames -> one or two sentences."""
    parts = [describe_hand(rows[:, slot], NAMES[slot], width, height, fps) for slot in (1, 0)]
    text = "; ".join(p for p in parts if p)
    if touching(rows):
        text += "; the hands touch"
    return (text[0].upper() + text[1:] + ".") if text else "No hand is visible."


def describe_hand(rows: np.ndarray, name: str, width: int, height: int, fps: float) -> str:
    present = rows[:, 0] > 0
    if not present.any():
        return f"the {name} hand is not visible"
    centres = np.stack(
        [
            (rows[:, BOX.start] + rows[:, BOX.start + 2]) / 2,
            (rows[:, BOX.start + 1] + rows[:, BOX.start + 3]) / 2,
        ],
        1,
    )
    seen = centres[present]
    first, last = seen[0], seen[-1]
    moved = np.linalg.norm(last - first) > 0.1 * height
    where = (
        f"from {place(rows[present][0], first, height)} to {place(rows[present][-1], last, height)}"
        if moved
        else f"at {place(rows[present][0], first, height)}"
    )
    phrases = ["comes into view"] if not present[0] and present[-1] else []
    phrases.append(f"{motion(first, last, seen, height, fps)} {where}")
    phrases += [p for p in (opening(rows[present]),) if p]
    if present[0] and not present[-1]:
        phrases.append("leaves the view")
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"the {name} hand {listed}"


def motion(first: np.ndarray, last: np.ndarray, path: np.ndarray, height: int, fps: float) -> str:
    dx, dy = (last - first) / height
    distance = float(np.hypot(dx, dy))
    if distance < 0.05:
        return "stays still"
    extent = "slightly" if distance < 0.15 else "clearly" if distance < 0.35 else "far"
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1).sum() / height if len(path) > 1 else 0.0
    speed = "quickly" if steps * fps / max(len(path) - 1, 1) > 0.04 else "slowly"
    vertical = "rises" if dy < 0 else "lowers"
    sideways = (
        "toward the signer's left" if dx > 0 else "toward the signer's right"
    )  # unmirrored video
    verb = vertical if abs(dy) >= abs(dx) else f"moves {sideways}"
    return f"{verb} {extent} and {speed}"


def place(row: np.ndarray, centre: np.ndarray, height: int) -> str:
    if row[BOX.start + 3] >= 0.98 * height:
        return "the bottom edge"
    share = centre[1] / height
    return "face height" if share < 0.4 else "chest height" if share < 0.65 else "waist height"


def openness(row: np.ndarray) -> float | None:
    """Mean fingertip-to-wrist distance over wrist-to-middle-finger-base distance (MediaPipe only)."""
    if row[1] != SOURCE_HANDS:
        return None
    points = row[7 : 7 + LANDMARKS * 3].reshape(LANDMARKS, 3)[:, :2]
    palm = np.linalg.norm(points[MIDDLE_BASE] - points[WRIST])
    if palm < 1e-3:
        return None
    return float(np.linalg.norm(points[list(FINGERTIPS)] - points[WRIST], axis=1).mean() / palm)


def opening(rows: np.ndarray) -> str:
    values = [v for v in (openness(r) for r in rows) if v is not None]
    if len(values) < 2:
        return ""
    change = values[-1] - values[0]
    if change > 0.3:
        return "opens"
    if change < -0.3:
        return "closes"
    return "stays open" if np.mean(values) > 1.6 else "stays closed"


def touching(rows: np.ndarray) -> bool:
    both = (rows[:, 0, 0] > 0) & (rows[:, 1, 0] > 0)
    if both.sum() == 0:
        return False
    a, b = rows[both, 0, BOX], rows[both, 1, BOX]
    overlap = (np.minimum(a[:, 2], b[:, 2]) > np.maximum(a[:, 0], b[:, 0])) & (
        np.minimum(a[:, 3], b[:, 3]) > np.maximum(a[:, 1], b[:, 1])
    )
    return bool(overlap.mean() >= 0.5)
