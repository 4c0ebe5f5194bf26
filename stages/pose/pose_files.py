"""``--pose-files``: one pose-format ``.pose`` file per clip at ``<out>/pose/<split>/<id>.pose``,
the format sign-language-processing's tools (``video_to_pose``, ``pose_format``'s visualiser,
segmentation and translation models) read.

A file holds the same points as ``pose.npy`` (one person; components ``POSE_LANDMARKS``,
``LEFT_HAND_LANDMARKS``, ``RIGHT_HAND_LANDMARKS`` and, with ``--pose-face``, ``FACE_LANDMARKS``
with only the subset's points, named by mesh index), always in pixels whatever
``--pose-normalise`` says, with pose-format's conventions: z as MediaPipe gives it, confidence 0
where a point was not found (pose-format masks those). Its frames are the manifest's selected
frames; its ``fps`` is theirs (the clip's rate over the step between the first and last).

A clip's frames come in chunks, in order, in one decode thread: the file is written when the
last selected frame arrives, atomically and with the same bytes for the same input. A clip
quarantined before that (it failed to decode) gets no file; one quarantined afterwards for
another feature's reason keeps the file it got.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.storage import atomic_file
from pipeline.video import ChunkInfo, FrameSelection
from stages.pose.points import PointLayout

POSE_FORMAT_HINT = "pip install pose-format==0.15.0"
HEADER_VERSION = 0.2  # what pose-format's load_holistic puts in its headers


def require_pose_format():
    try:
        import pose_format
    except ImportError:
        raise PrepError(f"--pose-files needs pose-format: {POSE_FORMAT_HINT}") from None
    return pose_format


def stored_fps(fps: float, indices: np.ndarray) -> float:
    """The mean rate of the kept frames: ``fps / step`` for every k-th frame."""
    if len(indices) < 2:
        return float(fps)
    return float(fps) * (len(indices) - 1) / float(indices[-1] - indices[0])


def pose_bytes(rows: np.ndarray, points: PointLayout, width: int, height: int, fps: float):
    """``[T, K, 4]`` rows -> the bytes of a ``.pose`` file (one person)."""
    import io

    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions
    from pose_format.utils.openpose import hand_colors

    colours = {"POSE_LANDMARKS": [(255, 0, 0)], "FACE_LANDMARKS": [(128, 0, 0)]}
    components = [
        PoseHeaderComponent(
            name=c.name,
            points=list(c.points),
            limbs=list(c.limbs),
            colors=colours.get(c.name, hand_colors),
            point_format="XYZC",
        )
        for c in points.components
    ]
    header = PoseHeader(HEADER_VERSION, PoseHeaderDimensions(width, height, 0), components)
    body = NumPyPoseBody(
        fps=fps, data=rows[:, None, :, :3].astype(np.float32), confidence=rows[:, None, :, 3]
    )
    buffer = io.BytesIO()
    Pose(header, body).write(buffer)
    return buffer.getvalue()


class PoseFiles:
    """Collects each clip's rows in its decode thread and writes its file at its last frame."""

    def __init__(self, layout: Layout, points: PointLayout) -> None:
        require_pose_format()
        self.layout, self.points = layout, points
        self.selection: FrameSelection | None = None
        self._local = threading.local()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def load(self) -> None:
        """The manifest's frame selection (the stage's plan reads the same): it says which
        chunk holds a clip's last frame."""
        first = m.manifest_table(self.layout, m.manifest_splits(self.layout)[0])
        self.selection = FrameSelection(**m.read_provenance(first).get("frame_selection", {}))

    def add(self, rows: np.ndarray, frames: np.ndarray, info: ChunkInfo) -> None:
        item, key = info.item, (info.position, info.item["id"])
        collected = getattr(self._local, "clip", None)
        if collected is None or collected[0] != key:
            collected = (key, [], [])
            self._local.clip = collected
        collected[1].append(rows)
        collected[2].append(info.indices)
        expected = len(self.selection.indices(item["num_frames"]))
        if sum(len(r) for r in collected[1]) < expected:
            return
        self._local.clip = None
        indices = np.concatenate(collected[2])
        height, width = frames.shape[1:3]
        data = pose_bytes(
            np.concatenate(collected[1]),
            self.points,
            width,
            height,
            stored_fps(item["fps"], indices),
        )
        sample_id = item["id"]
        if not sample_id or "/" in sample_id or sample_id.startswith("."):
            raise PrepError(f"sample id {sample_id!r} cannot name a .pose file")
        with atomic_file(self.layout.pose_file(item["split"], sample_id)) as handle:
            handle.write(data)

    def describe(self) -> str:
        return str(Layout(Path("<out>")).pose_file("<split>", "<id>"))
