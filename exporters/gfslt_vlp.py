"""``prep export --format gfslt-vlp``: the label files and images of GFSLT-VLP
(zhoubenjia/GFSLT-VLP), which trains on frames, not on precomputed features.

What its code reads (zhoubenjia/GFSLT-VLP at HEAD):

- ``utils.py:297-300``: ``load_dataset_file`` is ``pickle.load(gzip.open(f))``.
- ``datasets.py:63-75``: ``labels.<split>`` is a dict; its keys are iterated.
- ``datasets.py:101-111``: each value has ``text``, ``length``, ``name`` and ``imgs_path``;
  images are read from ``config['data']['img_path'] + x`` for ``x`` in ``imgs_path``
  (plain string concatenation: ``img_path`` ends with ``/``), with ``cv2.imread``.
- ``configs/config_gloss_free.yaml``: ``data.train_label_path``, ``dev_label_path``,
  ``test_label_path``, ``img_path``, ``max_length``.
- The distributed ``data/Phonexi-2014T/labels.dev``: keys ``"dev/<name>"``, values with
  ``name`` (the same string), ``gloss``, ``text``, ``length == len(imgs_path)`` and
  ``imgs_path`` relative to Phoenix14T's ``fullFrame-210x260px/``.

Corpora of frame folders (Phoenix14T, CSL-Daily) are pointed at in place: ``img_path`` is the
corpus folder and ``imgs_path`` lists the frames the manifest selects. Video corpora need the
frames stored in the shards (``--with-frames``); they are written under ``frames/``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from exporters.pickles import write_gzip_pickle
from pipeline.errors import PrepError
from pipeline.exporter import Exporter
from pipeline.storage import atomic_write_bytes
from pipeline.video import DecodeError, FrameFolderSource, FrameSelection

FRAMES = "frames"
MAX_LENGTH = 300  # configs/config_gloss_free.yaml


class GfsltVlpExporter(Exporter):
    name = "gfslt-vlp"
    version = 1
    trainer = "zhoubenjia/GFSLT-VLP"
    summary = "labels.<split> gzip pickles {name, gloss, text, length, imgs_path} and the frames"

    def check(self) -> None:
        if self.in_place:
            return
        for split in self.splits:
            if not any(f.startswith("frame_") for f in self.source.shard_fields(split)):
                raise PrepError(
                    "gfslt-vlp trains on frames: this corpus is video, so run features with "
                    f"--with-frames (the {split} shards hold no frame_*.jpg)"
                )

    @cached_property
    def in_place(self) -> bool:
        """Whether every clip is a frame folder that can be pointed at where it is."""
        if self.source.source_base is None:
            return False
        rows = [r for split in self.splits for r in self.source.manifest_rows(split)]
        return bool(rows) and all(r["source_kind"] == "frames" for r in rows)

    @property
    def image_root(self) -> Path:
        return self.source.source_base if self.in_place else self.target / FRAMES

    def export_split(self, split: str) -> list[Path]:
        rows = self.source.manifest_rows(split)
        paths = self._frame_paths_in_place(rows) if self.in_place else self._write_frames(split)
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
        selection = FrameSelection(
            **self.source.provenance(self.source.manifest_stage).get("frame_selection", {})
        )
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
                for i in selection.indices(row["num_frames"])
            ]
        return found

    def _write_frames(self, split: str) -> dict[str, list[str]]:
        """The shards' stored frames as ``frames/<split>/<id>/frame_NNNNN.jpg``."""
        found = {}
        for sample in self.source.samples(split, ("frame_*",)):
            sample_id = sample.meta["id"]
            names = sorted(sample.fields)
            for name in names:
                atomic_write_bytes(
                    self.target / FRAMES / split / sample_id / f"{name}.jpg", sample.fields[name]
                )
            found[sample_id] = [f"{split}/{sample_id}/{name}.jpg" for name in names]
        return found

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
            "--config ./configs/config_gloss_free.yaml` and then `train_slt.py`."
        )
