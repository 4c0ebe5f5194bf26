"""Frames of a few clips for the report's pictures: from the frame JPEGs a stage stored in the
shards (``--with-frames``), else decoded from the source video or frame folder the manifest
names. Unavailable frames are a note on the page, never a failed report.

Only the shard format is read here, not any stage: per-frame fields are ``frame_NNNNN.jpg``
(counted together as ``frame_*.jpg`` in the index, :func:`pipeline.shards.field_kind`) and a
sample's ``json`` lists which clip frame each stored one is (``frame_indices``)."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np

from pipeline.report.data import RunOutputs, has_field, iter_shard_members, shard_paths
from pipeline.shards import sample_key
from pipeline.video import DecodeError, open_sample

log = logging.getLogger(__name__)

FRAME_FIELDS = "frame_*.jpg"  # the index's name for every frame_NNNNN.jpg field
FRAME_INDICES = "frame_indices"  # in a sample's json: the clip frame of each stored frame


class FrameReader:
    """``read(split, id, frame_numbers)`` -> RGB frames at the manifest's size, and where from."""

    def __init__(self, outputs: RunOutputs) -> None:
        self.outputs = outputs
        self._shard_of: dict[str, dict[str, object]] = {}

    def read(
        self, split: str, sample_id: str, frame_numbers: list[int]
    ) -> tuple[list[np.ndarray], str]:
        """Frames for the given clip frame numbers (nearest stored frame for shard JPEGs)."""
        row = self.outputs.manifest_rows.get((split, sample_id))
        if row is None:
            return [], "not in the manifest"
        if has_field(self.outputs, split, FRAME_FIELDS):
            frames = self._from_shards(split, row, frame_numbers)
            if frames:
                return frames, "shard frames"
        return self._from_source(row, frame_numbers)

    def _from_source(self, row: dict, frame_numbers: list[int]) -> tuple[list[np.ndarray], str]:
        base = self.outputs.base_dir
        if base is None:
            return [], "the manifest records no base folder"
        try:
            source = open_sample(base, row, threads=1)
            frames = source.read([min(n, source.num_frames - 1) for n in frame_numbers])
        except (DecodeError, OSError, ValueError) as exc:
            log.warning("report: cannot read frames of %s: %s", row["id"], exc)
            return [], f"source unreadable: {exc}"
        return list(frames), "source video"

    def _from_shards(self, split: str, row: dict, frame_numbers: list[int]) -> list[np.ndarray]:
        key = sample_key(row["id"])
        meta = self._locate(split, key)
        if meta is None:
            return []
        indices = np.asarray(meta[FRAME_INDICES])
        positions = [int(np.abs(indices - n).argmin()) for n in frame_numbers]
        names = {f"frame_{p:05d}.jpg" for p in positions}
        found: dict[str, bytes] = {}
        for sample, fields in iter_shard_members(
            meta["shard"], lambda k, f: k == key and f in names
        ):
            if sample == key:
                found = fields
                break
        frames = []
        for p in positions:
            data = found.get(f"frame_{p:05d}.jpg")
            if data is None:
                return []
            small = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
            frames.append(
                cv2.resize(small, (row["width"], row["height"]), interpolation=cv2.INTER_LINEAR)
            )
        return frames

    def _locate(self, split: str, key: str) -> dict | None:
        """The sample's json plus the shard holding it (one pass over the split's tar headers)."""
        if split not in self._shard_of:
            self._shard_of[split] = {}
            for shard in shard_paths(self.outputs, split):
                for sample, fields in iter_shard_members(shard, lambda _k, f: f == "json"):
                    if "json" in fields:
                        indices = json.loads(fields["json"])[FRAME_INDICES]
                        self._shard_of[split][sample] = {FRAME_INDICES: indices, "shard": shard}
        return self._shard_of[split].get(key)  # type: ignore[return-value]
