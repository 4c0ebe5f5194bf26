"""``prep export --format gfslt-vlp``: the label files and images of GFSLT-VLP
(zhoubenjia/GFSLT-VLP), which trains on frames, not on precomputed features.

What its code reads (zhoubenjia/GFSLT-VLP at HEAD, 91ba953):

- ``utils.py:297-300``: ``load_dataset_file`` is ``pickle.load(gzip.open(f))``.
- ``datasets.py:63-75``: ``labels.<split>`` is a dict; its keys are iterated.
- ``datasets.py:101-111``: each value has ``text``, ``length``, ``name`` and ``imgs_path``;
  images are read from ``config['data']['img_path'] + x`` for ``x`` in ``imgs_path``
  (plain string concatenation: ``img_path`` ends with ``/``; no glob, so any file name works
  as long as it is listed), with ``cv2.imread`` and turned RGB (``:130-133``).
- ``datasets.py:113-144``: every image, whatever its size, is squashed to ``resize``²
  by ``img.resize(resize)`` (``:140``; PIL's default filter, bicubic for RGB), then cut to the
  ``input_size``² window ``utils.py:438-444`` picks (the centre in evaluation, at random in
  training), after ``ToTensor`` and ``Normalize``; ``train_vlp.py:139-140`` and
  ``train_slt.py:156-157`` default ``--input-size`` 224 and ``--resize`` 256. In training the
  list of PIL images first goes through ``vidaug`` rotation, rescaling and shifts of up to
  10 px (``:77-89,136-137``), at the images' own size.
- ``configs/config_gloss_free.yaml``: ``data.train_label_path``, ``dev_label_path``,
  ``test_label_path``, ``img_path``, ``max_length``.
- The distributed ``data/Phonexi-2014T/labels.dev``: keys ``"dev/<name>"``, values with
  ``name`` (the same string), ``gloss``, ``text``, ``length == len(imgs_path)`` and
  ``imgs_path`` relative to Phoenix14T's ``fullFrame-210x260px/``: whole frames.

Corpora of frame folders (Phoenix14T, CSL-Daily) are pointed at in place: ``img_path`` is the
corpus folder and ``imgs_path`` lists the frames the manifest selects. Video corpora have no
frame files, so the export writes them under ``frames/<split>/<id>/frame_NNNNN.png`` (``NNNNN``
the clip frame): decoded from the corpus's own files, each whole frame squashed to 256² as the
loader squashes it and stored losslessly (PNG: about 110 KB a frame of a real 540x720 clip,
six times a quality-90 JPEG), so the loader's own resize leaves it unchanged. When
the corpus's files are not reachable, the features stage's stored frames (``--with-frames``)
are copied instead, as ``frame_NNNNN.jpg``, and :meth:`GfsltVlpExporter.gaps` says how they
differ (``keep-aspect`` stores the central square, not the whole frame).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from exporters.pickles import write_gzip_pickle
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.exporter import Exporter, ShardSample
from pipeline.layout import temporary_sibling
from pipeline.storage import atomic_write_bytes, commit_dir
from pipeline.video import DecodeError, FrameFolderSource, FrameSelection, sample_frames
from stages.features.geometry import KEEP_ASPECT, squash

FRAMES = "frames"
MAX_LENGTH = 300  # configs/config_gloss_free.yaml
RESIZE = 256  # --resize default (train_vlp.py:140, train_slt.py:157), applied at datasets.py:140
SHIFT = 10  # px, the training shifts' bound (datasets.py:84)
BATCH = 16  # frames decoded at once
FEATURES = "features"  # its quarantined clips are those whose frames do not decode as counted


def frame_file(index: int, suffix: str) -> str:
    """A written frame's name: the clip frame it is (as Phoenix14T's ``images0001.png``)."""
    return f"frame_{index:05d}{suffix}"


def encode_png(frame: np.ndarray) -> bytes:
    """uint8 RGB ``[H, W, 3]`` as a PNG ``cv2.imread`` gives back exactly (BGR, as it reads)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"PNG encoding failed for a {frame.shape} frame")
    return data.tobytes()


def stored_frames(sample: ShardSample) -> list[tuple[str, bytes]]:
    """A sample's stored ``frame_NNNNN.jpg`` fields (``NNNNN`` its position) renamed after the
    clip frames its ``frame_indices`` say they are; shards from elsewhere are checked first."""
    fields = sorted(sample.fields)
    indices = sample.meta.get("frame_indices")
    numbered = isinstance(indices, list) and len(indices) == len(set(indices)) == len(fields)
    if not numbered or not all(type(i) is int and i >= 0 for i in indices):
        raise PrepError(
            f"gfslt-vlp: shard sample {sample.key}: its {len(fields)} stored frames do not "
            "match its frame_indices; rerun features with --with-frames"
        )
    if fields != [f"frame_{position:05d}.jpg" for position in range(len(fields))]:
        raise PrepError(
            f"gfslt-vlp: shard sample {sample.key} has frame fields prep does not write "
            f"({', '.join(fields[:3])}...); rerun features with --with-frames"
        )
    return [(frame_file(i, ".jpg"), sample.fields[f]) for i, f in zip(indices, fields)]


def write_clip_folder(folder: Path, files: Iterable[tuple[str, bytes]]) -> list[str]:
    """A clip's frame files, written in a hidden sibling folder renamed over ``folder`` once
    complete: a reader never sees half a clip, and an earlier export's frames do not linger.
    Returns the names in the order written."""
    tmp = temporary_sibling(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    names = []
    try:
        for name, data in files:
            (tmp / name).write_bytes(data)
            names.append(name)
        commit_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


class GfsltVlpExporter(Exporter):
    name = "gfslt-vlp"
    version = 2  # 2: video frames are whole frames, named frame_NNNNN.png (was .jpg.jpg)
    trainer = "zhoubenjia/GFSLT-VLP"
    summary = "labels.<split> gzip pickles {name, gloss, text, length, imgs_path} and the frames"

    def check(self) -> None:
        if self.in_place or self.unreachable is None:
            return
        for split in self.splits:
            if not any(f.startswith("frame_") for f in self.source.shard_fields(split)):
                raise PrepError(
                    f"gfslt-vlp trains on frames: {self.unreachable} and the {split} shards "
                    "hold no frame_*.jpg; restore the corpus, or run features with --with-frames"
                )

    @cached_property
    def in_place(self) -> bool:
        """Whether every clip is a frame folder that can be pointed at where it is."""
        if self.source.source_base is None:
            return False
        rows = [r for split in self.splits for r in self.source.manifest_rows(split)]
        return bool(rows) and all(r["source_kind"] == "frames" for r in rows)

    @cached_property
    def unreachable(self) -> str | None:
        """Why the clips' own files cannot be decoded (None: they can, and whole frames are
        written); then the features stage's stored frames are copied."""
        return self.source.unreachable(self.splits)

    @cached_property
    def selection(self) -> FrameSelection:
        recorded = self.source.provenance(self.source.manifest_stage).get("frame_selection", {})
        return FrameSelection(**recorded)

    @property
    def image_root(self) -> Path:
        return self.source.source_base if self.in_place else self.target / FRAMES

    def export_split(self, split: str) -> list[Path]:
        rows = self.source.manifest_rows(split)
        if self.in_place:
            paths = self._frame_paths_in_place(rows)
        elif self.unreachable is None:
            paths = self._write_whole_frames(split, rows)
        else:
            paths = self._copy_stored_frames(split)
        labels: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["id"] not in paths:
                continue  # quarantined by the features stage: no frames to train on
            name = f"{split}/{row['id']}"
            images = paths[row["id"]]
            labels[name] = {
                "name": name,
                "gloss": row.get("gloss") or "",
                "text": row.get("translation") or "",
                "length": len(images),
                "imgs_path": images,
            }
        return [write_gzip_pickle(self.target / f"labels.{split}", labels)]

    def _frame_paths_in_place(self, rows: list[dict]) -> dict[str, list[str]]:
        """Each clip's selected frames, relative to the corpus folder, as the manifest counts them."""
        base = self.source.source_base
        found = {}
        for row in rows:
            folder = base / row["source_path"]
            try:
                frames = FrameFolderSource(folder, row["fps"], row["start"], row["end"], threads=1)
            except DecodeError as exc:
                raise PrepError(f"gfslt-vlp: {row['id']}: {exc}") from exc
            if frames.num_frames != row["num_frames"]:
                raise PrepError(
                    f"gfslt-vlp: {folder} has {frames.num_frames} frames, the manifest counted "
                    f"{row['num_frames']}: rerun the manifest"
                )
            found[row["id"]] = [
                frames.files[int(i)].relative_to(base).as_posix()
                for i in self.selection.indices(row["num_frames"])
            ]
        return found

    def _write_whole_frames(self, split: str, rows: list[dict]) -> dict[str, list[str]]:
        """Each clip's selected frames decoded from its own file, as ``frames/<split>/<id>/
        frame_NNNNN.png``; clips the features stage quarantined (their frames do not decode as
        the manifest counts them) are left out, as they are from the shards."""
        quarantined = self._quarantined_by_features(split)
        found = {}
        for row in rows:
            if row["id"] in quarantined:
                continue
            folder = self.inside_target(self.target / FRAMES / split / row["id"])
            names = write_clip_folder(folder, self._pngs(row))
            found[row["id"]] = [f"{split}/{row['id']}/{name}" for name in names]
        return found

    def _pngs(self, row: dict) -> Iterator[tuple[str, bytes]]:
        """The clip's selected frames, whole (after the manifest's signer crop, where it has
        one), squashed to 256² as datasets.py:140 squashes them (:func:`squash`: PIL bicubic,
        in the pass order of the Pillow of GFSLT-VLP's time), as PNGs."""
        path = self.source.source_base / row["source_path"]
        try:
            for clip in sample_frames(self.source.source_base, row, self.selection, BATCH):
                for index, frame in zip(clip.indices, clip.frames):
                    yield frame_file(int(index), ".png"), encode_png(squash(frame, RESIZE))
        except DecodeError as exc:
            raise PrepError(
                f"gfslt-vlp: {row['id']} ({path}): {exc}; rerun the manifest with --deep-check"
            ) from exc

    def _quarantined_by_features(self, split: str) -> set[str]:
        path = self.source.layout.quarantine_table(FEATURES)
        if not path.is_file():
            return set()
        return {r["id"] for r in m.read_table(path).to_pylist() if r["split"] == split}

    def _copy_stored_frames(self, split: str) -> dict[str, list[str]]:
        """The shards' stored frames, bytes unchanged, as ``frames/<split>/<id>/frame_NNNNN.jpg``
        (``NNNNN`` the clip frame the sample's ``frame_indices`` give for it)."""
        found = {}
        for sample in self.source.samples(split, ("frame_*",)):
            sample_id = sample.meta["id"]
            folder = self.inside_target(self.target / FRAMES / split / sample_id)
            names = write_clip_folder(folder, stored_frames(sample))
            found[sample_id] = [f"{split}/{sample_id}/{name}" for name in names]
        return found

    def gaps(self) -> list[str]:
        found = []
        if not self.in_place:
            found.append(
                self._whole_frames_gap() if self.unreachable is None else self._stored_gap()
            )
        if self.selection != FrameSelection():
            found.append(
                f"imgs_path lists the manifest's selected frames ({self.selection.as_dict()}), "
                "where GFSLT-VLP's own labels list every frame (it keeps at most max_length of "
                "them itself, at random: datasets.py:119-124)"
            )
        return found

    def _frame_sizes(self) -> list[tuple[int, int]]:
        rows = [r for split in self.splits for r in self.source.manifest_rows(split)]
        return sorted({(int(r["width"]), int(r["height"])) for r in rows})

    def _whole_frames_gap(self) -> str:
        sizes = ", ".join(f"{w}x{h}" for w, h in self._frame_sizes()[:3])
        return (
            "video frames are decoded from the corpus's own files and written whole, squashed to "
            f"{RESIZE}x{RESIZE} as GFSLT-VLP's loader squashes them (datasets.py:140, PIL bicubic; "
            "--resize 256) and stored as PNG, so its evaluation input is what it would make of "
            "full-size frames (its resize leaves them as they are); its training augmentations "
            f"(datasets.py:77-89,136-137) act on them at {RESIZE}x{RESIZE}, not at the clips' "
            f"{sizes}, so a {SHIFT} px shift moves the content further and a rotation comes after "
            f"the squash; another --resize resamples these {RESIZE}x{RESIZE} frames again"
        )

    def _stored_gap(self) -> str:
        options = (self.source.shard_index(self.splits[0]) or {}).get("provenance", {})
        options = options.get("options", {})
        geometry = options.get("frame_geometry", KEEP_ASPECT)
        size, quality = options.get("frame_size"), options.get("jpeg_quality")
        line = (
            f"video frames are the features stage's stored {size}x{size} JPEGs (quality "
            f"{quality}), copied because {self.unreachable}: "
        )
        if geometry == KEEP_ASPECT:
            width, height = max(self._frame_sizes(), key=lambda s: abs(s[0] - s[1]))
            cut, side = abs(width - height) // 2, "top and bottom" if height > width else "sides"
            line += (
                "--frame-geometry keep-aspect keeps each frame's central square, where GFSLT-VLP "
                "squashes the whole frame (datasets.py:140): "
                + (
                    f"up to {cut} px are cut from the {side} of a {width}x{height} clip; restore "
                    "the corpus folder to export whole frames"
                    if cut
                    else "the clips are square, so nothing is cut"
                )
            )
        else:
            line += (
                f"--frame-geometry {geometry} stored the whole frame squashed by PIL bicubic, "
                "as GFSLT-VLP's loader squashes it (datasets.py:140), but JPEG-compressed"
            )
        if size != RESIZE:
            line += f"; GFSLT-VLP resamples them from {size} to {RESIZE} px"
        return line

    def finish(self) -> list[Path]:
        import yaml

        data: dict[str, Any] = {"img_path": f"{self.image_root}/", "max_length": MAX_LENGTH}
        for split in ("train", "dev", "test"):
            if split in self.splits:
                data[f"{split}_label_path"] = str(self.target / f"labels.{split}")
        path = self.target / "gfslt-vlp-data.yaml"
        atomic_write_bytes(path, yaml.safe_dump({"data": data}, sort_keys=True).encode())
        return [path]

    def instructions(self) -> str:
        return (
            "Put the `data:` keys of `gfslt-vlp-data.yaml` into GFSLT-VLP's "
            "`configs/config_gloss_free.yaml` (they replace `train_label_path`, `dev_label_path`, "
            "`test_label_path` and `img_path`), then train as its README says, e.g. "
            "`python -m torch.distributed.launch --nproc_per_node=8 --use_env train_vlp.py "
            "--config ./configs/config_gloss_free.yaml` and then `train_slt.py`, keeping "
            "`--resize 256 --input-size 224` (their defaults)."
        )
