"""The ``pose`` feature of the features stage: fields ``pose.npy`` (float32 ``[T, K, 3]``: x, y, z)
and ``pose_conf.npy`` (float32 ``[T, K]``), one row per selected frame, ``K`` as
:mod:`stages.pose.points` lays out (75, plus the face subset's points).

Landmarks are found in the decode threads (``host_prepare``, a clip's chunks in order, which
tracking and the ``.pose`` files need); the batch call only splits the rows into the two fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import PrepError
from pipeline.layout import Layout
from pipeline.video import ChunkInfo
from stages.pose import normalise as norm
from stages.pose.detect import HolisticLandmarks, KeypointLandmarks, require_mediapipe
from stages.pose.points import FACE_SUBSETS, PointLayout
from stages.pose.pose_files import PoseFiles
from stages.pose.signer import SIGNER_CHOICES

PERSON = {
    "central": "one, tracked by MediaPipe Holistic; chosen by face (width x centrality), kept "
    "by distance, other people's faces masked (stages.pose.signer)",
    "mediapipe": "one, MediaPipe Holistic's own choice (its detector's best score), then tracked",
}


class PoseEncoder:
    """Whole-body landmarks of one person per frame (see :mod:`stages.pose`)."""

    def __init__(
        self,
        source: HolisticLandmarks | KeypointLandmarks,
        points: PointLayout,
        *,
        normalise: str = "none",
        signer: str = "central",
        files: PoseFiles | None = None,
    ) -> None:
        self.source, self.points, self.normalise = source, points, normalise
        self.signer, self.files = signer, files
        self.fields = {"pose.npy": (points.count, 3), "pose_conf.npy": (points.count,)}

    def load(self) -> None:
        self.source.load()
        if self.files is not None:
            self.files.load()

    def host_prepare(self, frames: np.ndarray, info: ChunkInfo) -> torch.Tensor:
        rows = self.source.rows(frames, info)
        if self.files is not None:
            self.files.add(rows, frames, info)
        return torch.from_numpy(norm.normalise_rows(rows, self.normalise, frames.shape[2]))

    def device_prepare(self, prepared: torch.Tensor) -> torch.Tensor:
        return prepared

    def __call__(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        rows = batch.numpy()
        return {
            "pose.npy": np.ascontiguousarray(rows[..., :3]),
            "pose_conf.npy": np.ascontiguousarray(rows[..., 3]),
        }

    def provenance(self) -> dict[str, Any]:
        described = {
            "source": self.source.description,
            "points": self.points.count,
            "layout": self.points.describe(),
            "normalise": self.normalise,
            "coordinates": norm.describe(self.normalise),
        }
        if isinstance(self.source, KeypointLandmarks):
            described.update(
                person="the keypoints file's",
                confidence="the keypoints file's score",
                mapping="COCO-WholeBody 133 -> MediaPipe Holistic order (stages.pose.points)",
            )
        else:
            described.update(
                person=PERSON[self.signer],
                signer=self.signer,
                face=self.points.face,
                face_mesh=list(self.points.face_mesh),
                confidence="body: visibility; hands, face: 1 where found; 0 where not found",
            )
        if self.files is not None:
            described["pose_files"] = self.files.describe()
        return described


def pose_encoder(options: Any, layout: Layout) -> PoseEncoder:
    """The encoder for the features stage's options; a bad choice fails here, before any work,
    with a one-line reason."""
    for flag, value, choices in (
        ("--pose-normalise", options.pose_normalise, norm.NORMALISE_CHOICES),
        ("--pose-face", options.pose_face, FACE_SUBSETS),
        ("--pose-signer", options.pose_signer, SIGNER_CHOICES),
    ):
        if value not in choices:
            raise PrepError(f"{flag} takes one of {', '.join(choices)}; got {value!r}")
    if options.pose_keypoints:
        folder = Path(options.pose_keypoints).expanduser().resolve()
        if not folder.is_dir():
            raise PrepError(
                f"--pose-keypoints {options.pose_keypoints}: no such folder "
                "(one <id>.npy of COCO-WholeBody [T, 133, 3] per clip)"
            )
        if options.pose_face != "none":
            raise PrepError(
                "--pose-face picks points of MediaPipe's face mesh, which COCO-WholeBody keypoints "
                "(--pose-keypoints) do not have: drop one of them"
            )
        source: HolisticLandmarks | KeypointLandmarks = KeypointLandmarks(folder)
        points = PointLayout()
    else:
        require_mediapipe()
        points = PointLayout.with_face(options.pose_face)
        source = HolisticLandmarks(points, options.pose_signer)
    files = PoseFiles(layout, points) if options.pose_files else None
    return PoseEncoder(
        source, points, normalise=options.pose_normalise, signer=options.pose_signer, files=files
    )
