"""``prep export --format uni-sign``: the label pickles and per-clip pose pickles of Uni-Sign
(ZechengLi19/Uni-Sign, ICLR 2025), which trains on COCO-WholeBody poses (and hand crops).

What its code reads (ZechengLi19/Uni-Sign at HEAD, 2c9028f):

- ``utils.py:315-318``: a label file is ``pickle.load(gzip.open(f))``; ``config.py:4-26`` names
  them ``data/<Dataset>/labels.<split>`` (WLASL: ``labels-2000.<split>``); ``utils.py:526``:
  ``--dataset`` is one of CSL_News, CSL_Daily, WLASL, How2Sign, OpenASL.
- ``datasets.py:436,446-457``: a dict whose keys are iterated; each value's ``text``, ``name``,
  ``video_path`` and, if present, ``" ".join(gloss)`` (a list of glosses: a string would be
  spelled out). The shipped ``data/*/labels.*`` (read with pickletools): CSL-Daily keyed by
  ``S000020_P0000_T00`` with ``video_path`` ``<key>.mp4`` and ``gloss`` a list; WLASL keyed by
  the video id, ``video_path`` ``<id>.mp4``; How2Sign keyed ``<SENTENCE_NAME>.mp4``, OpenASL
  ``<vid>.mp4`` (``yid-HH:MM:SS.mmm-HH:MM:SS.mmm``), ``name == video_path == key``, gloss ``''``.
- ``datasets.py:415-434`` with ``config.py:29-45``: the pose folder is ``pose_dirs[d]`` for
  CSL_Daily, ``pose_dirs[d]/<phase>`` for WLASL, ``pose_dirs[d].format(phase)`` for How2Sign
  and OpenASL; the video folder ``rgb_dirs[d]``, else ``rgb_dirs[d]/<phase>``. Phases are
  ``train``, ``dev``, ``test`` (``fine_tuning.py:27-53``); How2Sign has no dev
  (``datasets.py:424-425``, ``fine_tuning.py:51-64``).
- ``datasets.py:461-490``: the pose is ``pickle.load(open(pose_dir/video_path.replace(".mp4",
  ".pkl")))``: plain, not gzip; ``duration = len(scores)`` (or ``end - start`` when those keys
  exist); frame ``i`` of ``keypoints``/``scores`` is indexed directly. ``:17-75``: of each frame
  only person ``[0]`` is used; body ``[0, 3..10]``, hands ``91:112``, ``112:133``, face
  ``23..39`` step 2, ``83..90`` and ``53``; a score ``<= 0.3`` masks a point (``:71,104``).
- ``demo/pose_extraction.py:13-15,44-49``: ``{"keypoints": [T x (P, 133, 2)] / [W, H],
  "scores": [T x (P, 133)]}``, one entry per decoded frame, ``pickle.dump``; rtmlib's arrays are
  float64 keypoints and float32 scores (``rtmlib/tools/pose_estimation/rtmpose.py:96-101``,
  ``post_processings.py:34-41``), P people (``rtmpose.py:24-38``; the code reads ``[0]``).
- ``datasets.py:493-495,324-333``: only ``--rgb_support`` opens ``rgb_dir/video_path`` with
  decord and takes frames by the pose's indices: one video per sample, frame for frame.
- ``models.py:104-107``: the mT5 prompt says Chinese when the dataset name holds ``CSL``,
  English otherwise; ``fine_tuning.py:283-285``: CSL_Daily's BLEU is per character.

prep's pose is MediaPipe Holistic's layout (:mod:`stages.pose.points`), mapped back to
COCO-WholeBody 133 by :class:`WholeBodyMapping`: the inverse of ``WHOLEBODY_TO_BODY`` and
``WHOLEBODY_TO_HANDS`` (exact for ``--pose-keypoints`` runs on those 69 points), the face from
the face-mesh subset by PeizhiYan/Mediapipe_2_Dlib_Landmarks (db9e81e)
``build/lib/mediapipe2dlib/mp2dlib.py:33-122`` (a pair averaged, ``:124-127,141``), the nose
tip from the body's nose; one person; :meth:`UniSignExporter.gaps` says the rest. A
``video_path`` without ``.mp4`` (another container) names its pose pickle unchanged, as
``datasets.py:462`` derives it.
"""

from __future__ import annotations

import pickle
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from exporters.pickles import write_gzip_pickle
from pipeline.errors import PrepError
from pipeline.exporter import Exporter
from pipeline.storage import atomic_file, atomic_write_bytes
from pipeline.video import FrameSelection
from stages.pose.points import BODY, HAND, WHOLEBODY_POINTS, WHOLEBODY_TO_BODY, WHOLEBODY_TO_HANDS

PROTOCOL = 4  # pickle.dump's default in Uni-Sign's Python 3.9 (README.md:47)
PHASES = ("train", "dev", "test")  # fine_tuning.py:27-53
SLOTS = {"csl-daily": "CSL_Daily", "wlasl": "WLASL", "how2sign": "How2Sign", "openasl": "OpenASL"}
KEY_WITH_MP4 = ("How2Sign", "OpenASL")  # their shipped labels key by the clip's file name
FACE, NOSE_TIP, NOSE = 23, 23 + 30, 0  # COCO-WholeBody's 68 face points start at 23
# 300-W's 68 points as face-mesh indices (mp2dlib.py:33-122, 0-based rows; a pair: the mean).
FACE68_MESH = tuple(
    tuple(int(i) for i in cell.split("+"))
    for cell in """127 234 93 132+58 58+172 136 150 176 152 400 379 365 397+288 361 323 454 356
    70 63 105 66 107 336 296 334 293 300 168+6 197+195 5 4 75 97 2 326 305 33 160 158 133 153 144
    362 385 387 263 373 380 61 39 37 0 267 269 291 321 314 17 84 91 78 82 13 312 308 317 14
    87""".split()
)


class NumpyArray:
    """Pickles as ``numpy.ndarray(shape, dtype, bytearray)``: a writable array that numpy 1.x
    (Uni-Sign pins 1.22.4, requirements.txt:6) and 2.x both load. numpy's own pickles name
    ``numpy.core`` or ``numpy._core`` after the writer's version; 1.22 cannot import the latter."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    def __reduce__(self) -> tuple:
        a = self.array
        return (np.ndarray, (a.shape, a.dtype.str, bytearray(a.tobytes())))


class UniSignExporter(Exporter):
    name = "uni-sign"
    version = 1
    trainer = "ZechengLi19/Uni-Sign"
    summary = "labels.<split> gzip pickles and one COCO-WholeBody pose pickle per clip"
    default_fields = ("pose", "pose_conf")

    @property
    def slot(self) -> str:
        """Uni-Sign's ``--dataset`` whose paths and evaluation fit: the corpus's own, a Chinese
        corpus CSL_Daily (its prompt and character BLEU), any other OpenASL (dev and test)."""
        if self.source.dataset in SLOTS:
            return SLOTS[self.source.dataset]
        return "CSL_Daily" if self.language == "zh" else "OpenASL"

    @cached_property
    def language(self) -> str:
        rows = self.source.manifest_rows(self.source.splits[0])
        return rows[0]["language"] if rows else ""

    @property
    def pose_root(self) -> Path:
        return self.target / "dataset" / self.slot / "pose_format"

    def pose_dir(self, split: str) -> Path:
        return self.pose_root if self.slot == "CSL_Daily" else self.pose_root / split

    def label_path(self, split: str) -> Path:
        return self.target / "data" / self.slot / f"labels.{split}"

    def check(self) -> None:
        if sorted(self.fields) != sorted(self.default_fields):
            raise PrepError(
                "uni-sign exports the pose field (pose.npy, pose_conf.npy): drop --fields"
            )
        recorded = self.source.provenance(self.source.manifest_stage).get("frame_selection", {})
        if FrameSelection(**recorded) != FrameSelection():
            raise PrepError(
                "uni-sign needs a pose for every frame of each video (datasets.py:469,494); the "
                f"manifest keeps {FrameSelection(**recorded).as_dict()}: rerun the manifest "
                "without --frame-step/--max-frames"
            )
        for split in self.splits:
            held = self.source.shard_fields(split)
            if not {"pose.npy", "pose_conf.npy"} <= held:
                raise PrepError(
                    f"uni-sign needs the pose feature: the {split} shards hold "
                    f"{', '.join(sorted(held)) or 'nothing'}; run features with --features pose"
                )
            if self.pose_info(split).get("normalise") != "none":
                raise PrepError(
                    "uni-sign needs pose in pixels (it divides by the frame's size): rerun "
                    "features with --pose-normalise none"
                )
        seen: dict[tuple[Path, str], str] = {}
        for split in self.splits:
            for row in self.source.manifest_rows(split):
                pose = self.entry(row)[1]["video_path"].replace(".mp4", ".pkl")  # datasets.py:462
                if PurePosixPath(pose).is_absolute() or ".." in PurePosixPath(pose).parts:
                    raise PrepError(f"uni-sign: {row['id']}: pose path {pose} leaves its folder")
                other = seen.setdefault((self.pose_dir(split), pose), row["id"])
                if other != row["id"]:
                    raise PrepError(f"uni-sign: {other} and {row['id']} would share {pose}")
                if min(row["width"] or 0, row["height"] or 0) <= 0:
                    raise PrepError(f"uni-sign: {row['id']} has no frame size; rerun the manifest")

    def pose_info(self, split: str) -> dict[str, Any]:
        """The features stage's record of how ``pose.npy`` was made (shards' index)."""
        index = self.source.shard_index(split) or {}
        return index.get("provenance", {}).get("features", {}).get("pose", {})

    def entry(self, row: dict) -> tuple[str, dict[str, Any]]:
        """``(key, value)`` of the label dict, named as Uni-Sign's shipped labels are for its
        corpora; elsewhere ``video_path`` is the video file under the corpus folder, or
        ``<id>.mp4`` for a frame folder or a segment, which have no video of their own."""
        own = row.get("source_id") or row["id"]
        gloss = (row.get("gloss") or "").split()
        if self.source.dataset in SLOTS:
            video = f"{own}.mp4"
            key = video if self.slot in KEY_WITH_MP4 else own
        else:
            key = row["id"]
            video = row["source_path"] if self.own_video(row) else f"{row['id']}.mp4"
        value = {"name": key, "gloss": gloss or "", "text": row.get("translation") or ""}
        return key, {**value, "video_path": video}

    @staticmethod
    def own_video(row: dict) -> bool:
        """Whether the sample is one whole video file (what decord can open frame for frame)."""
        return row["source_kind"] == "video" and row["start"] is None and row["end"] is None

    def export_split(self, split: str) -> list[Path]:
        rows = {row["id"]: row for row in self.source.manifest_rows(split)}
        mapping = WholeBodyMapping(self.pose_info(split))
        written = set()
        for sample in self.source.samples(split, self.default_fields):
            row = rows[sample.meta["id"]]
            pose, conf = sample.array("pose"), sample.array("pose_conf")
            if len(pose) != row["num_frames"] or len(conf) != len(pose):
                raise PrepError(
                    f"uni-sign: {row['id']} has {len(pose)} pose rows, its video "
                    f"{row['num_frames']} frames; rerun features"
                )
            keypoints, scores = mapping(pose, conf, row["width"], row["height"])
            path = self.entry(row)[1]["video_path"].replace(".mp4", ".pkl")
            write_pickle(
                self.inside_target(self.pose_dir(split) / path), pose_pickle(keypoints, scores)
            )
            written.add(row["id"])
        labels = dict(self.entry(row) for row in rows.values() if row["id"] in written)
        files = [write_gzip_pickle(self.label_path(split), labels)]
        return files if self.slot == "CSL_Daily" else [*files, self.pose_dir(split)]

    def finish(self) -> list[Path]:
        """``uni-sign-config.py``: the lines of Uni-Sign's ``config.py`` for this export."""
        slot, lines = self.slot, ["# prep export --format uni-sign: append to config.py\n"]
        for split in PHASES:
            if split in self.splits and not (slot == "How2Sign" and split == "dev"):
                lines.append(f"{split}_label_paths[{slot!r}] = {str(self.label_path(split))!r}\n")
        pose = str(self.pose_root)
        if slot in KEY_WITH_MP4:  # formatted with the phase (datasets.py:426,430)
            pose = pose.replace("{", "{{").replace("}", "}}") + "/{}"
        lines.append(f"pose_dirs[{slot!r}] = {pose!r}\n")
        lines.append(f"rgb_dirs[{slot!r}] = {str(self.rgb_root)!r}\n")
        path = self.target / "uni-sign-config.py"
        atomic_write_bytes(path, "".join(lines).encode("utf-8"))
        return [path, self.pose_root] if slot == "CSL_Daily" else [path]

    @property
    def rgb_root(self) -> Path:
        return self.target / "dataset" / self.slot / "rgb_format"

    def without_video(self) -> int:
        return sum(
            1 for s in self.splits for r in self.source.manifest_rows(s) if not self.own_video(r)
        )

    def gaps(self) -> list[str]:
        found = pose_gaps(self.pose_info(self.splits[0]))
        if missing := self.without_video():
            found.append(
                f"{missing} samples are frame folders or segments of longer videos: "
                "--rgb_support needs one video per sample, frame for frame, at rgb_dir/video_path "
                "(datasets.py:494,324-333), which prep does not have; train pose-only"
            )
        if self.language not in ("en", "zh"):
            found.append(
                f"the corpus is {self.language!r}; Uni-Sign asks mT5 for English, or Chinese for "
                "CSL datasets (models.py:104-107): edit its lang there"
            )
        if self.slot == "How2Sign" and "dev" in self.splits:
            found.append("Uni-Sign reads no How2Sign dev split (datasets.py:424-425): test is dev")
        if others := [s for s in self.splits if s not in PHASES]:
            found.append(f"splits {', '.join(others)} are written; Uni-Sign reads train/dev/test")
        return found

    def instructions(self) -> str:
        videos = self.rgb_root if self.slot == "CSL_Daily" else self.rgb_root / "<split>"
        rgb = f"the video named by each label's `video_path` under `{videos}`"
        base = self.source.source_base
        if self.source.dataset not in SLOTS and base is not None:
            rgb += f" (whole videos: `mkdir -p {videos.parent} && ln -s {base} {videos}`)"
        return (
            "Append `uni-sign-config.py` to Uni-Sign's `config.py` (label files, pose and video "
            f"folders of `--dataset {self.slot}`). Train pose-only as `script/train_stage3.sh`'s "
            "pose-only block does: `deepspeed fine_tuning.py --dataset "
            f"{self.slot} --task SLT --finetune <stage-1 checkpoint> ...` (`--task ISLR` for "
            f"isolated signs). `--rgb_support` also needs {rgb}, frame for frame with the pose."
        )


class WholeBodyMapping:
    """prep's MediaPipe-order ``pose.npy``/``pose_conf.npy`` -> COCO-WholeBody 133 points, as
    Uni-Sign picks its parts by COCO-WholeBody positions (datasets.py:32-45). Each point comes
    from one or two (averaged, the lower score) of prep's, or from none (score 0)."""

    def __init__(self, info: dict[str, Any]) -> None:
        mesh = {m: BODY + 2 * HAND + i for i, m in enumerate(info.get("face_mesh") or ())}
        sources: list[tuple[int, ...]] = [()] * WHOLEBODY_POINTS
        for body, coco in enumerate(WHOLEBODY_TO_BODY):
            if coco < 91:  # 17-22 of BlazePose are hand points, taken from the hands
                sources[coco] = (body,)
        for k, coco in enumerate(WHOLEBODY_TO_HANDS):
            sources[coco] = (BODY + k,)
        sources[NOSE_TIP] = (NOSE,)
        for j, cell in enumerate(FACE68_MESH):
            if all(m in mesh for m in cell):
                sources[FACE + j] = tuple(mesh[m] for m in cell)
        self.first = np.array([s[0] if s else 0 for s in sources])
        self.second = np.array([s[-1] if s else 0 for s in sources])
        self.empty = np.array([not s for s in sources])

    def __call__(
        self, pose: np.ndarray, conf: np.ndarray, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[T, 133, 2]`` float64 in fractions of the frame, ``[T, 133]`` float32 scores;
        a point not found (or not mapped) is 0 with score 0."""
        xy = pose[..., :2].astype(np.float64) / np.array([width, height], np.float64)
        keypoints = (xy[:, self.first] + xy[:, self.second]) / 2
        scores = np.minimum(conf[:, self.first], conf[:, self.second]).astype(np.float32)
        scores[:, self.empty] = 0
        keypoints[scores <= 0] = 0
        return keypoints, scores


def pose_pickle(keypoints: np.ndarray, scores: np.ndarray) -> dict[str, list]:
    """pose_extraction.py:23,44-46's dict, one person per frame."""
    return {
        "keypoints": [NumpyArray(k[None]) for k in keypoints],
        "scores": [NumpyArray(s[None]) for s in scores],
    }


def write_pickle(path: Path, value: Any) -> Path:
    """A plain pickle (datasets.py:462 opens it without gzip), atomically, without a memo: the
    same values give the same bytes."""
    with atomic_file(path) as handle:
        pickler = pickle.Pickler(handle, protocol=PROTOCOL)
        pickler.fast = True
        pickler.dump(value)
    return path


def pose_gaps(info: dict[str, Any]) -> list[str]:
    """How far the mapped points are from RTMW's (demo/pose_extraction.py:70-75)."""
    empty = WholeBodyMapping(info).empty
    face = f"{68 - int(empty[FACE : FACE + 68].sum())} of 68 face points"
    nose = "the nose tip (53, Uni-Sign's face centre, datasets.py:43-44) is the body's nose"
    if str(info.get("source", "")).startswith("keypoints-file"):
        return [
            "poses are the --pose-keypoints COCO-WholeBody files' through prep's 75 MediaPipe-"
            "order points: body 17, heels, big toes, both hands and 6 eye and mouth corners come "
            f"back exactly, small toes and the other face points score 0 ({face}; {nose})"
        ]
    mesh = (
        "prep's face-mesh subset by mp2dlib.py's mapping"
        if info.get("face_mesh")
        else "BlazePose's eye and mouth corners"
    )
    return [
        "poses are MediaPipe Holistic's, not RTMW's: COCO body 17 from BlazePose's points, heels "
        "and big toes from its heels and foot indices, small toes score 0, hands 21 to 21",
        "scores are BlazePose's visibility for the body and 1 for a found hand or face point, "
        "not RTMW's SimCC confidences; Uni-Sign masks scores <= 0.3 (datasets.py:71,104)",
        f"{face} from {mesh} (--pose-face contours fills 60), the rest score 0; {nose}",
    ]
