"""``prep export --format spamo``: the annotation dicts and per-clip feature files SpaMo
(eddie-euijun-hwang/SpaMo, NAACL 2025) trains from; it never sees a frame.

The export targets SpaMo at commit aee7f8b6ea8201b710690adcce6f46260dd11bba (2025-07-09,
"ckpt_link", by its author), read in the fork Mohamed-Mohamed-Ibrahim/SpaMo, whose head it is
(croco-corp/SpaMo-PJM and Kowshik-006/SpaMo-BdSL build on it). The official repository
eddie-euijun-hwang/SpaMo, as stored, ends at fb1d495 (2024-08-16, "Remove privacy"): another
layout, with a top-level ``h14t_dataset.py`` (class ``h14t_dataset.Phoenix14T``) and
``t5_slt.py`` and no ``configs/``, ``dataset/`` or ``scripts/``. Its ``h14t_dataset.py:31,
38-39,43-44`` read the same info and feature files, but the dataset class ``spamo-data.yaml``
names and the ``configs/finetune.yaml`` it merges over exist only at aee7f8b
(:meth:`SpamoExporter.instructions` says so in ``EXPORT.md``). Read at aee7f8b:

- ``dataset/p14t.py:61-65``: ``<anno_root>/<mode>_info_ml.npy`` through
  ``np.load(allow_pickle=True).item()``: a dict. ``:201-203``: ``len(data) - 1`` clips,
  ``:139``: clip ``i`` is ``data[i]``, so the keys are ``0..N-1`` beside one other key; in
  the distributed ``preprocess/Phoenix14T/dev_info.npy`` that key is ``prefix`` (the frame
  folder the ``folder`` globs start from), and each clip has ``fileid``, ``folder``
  (``dev/<name>/*.png``), ``signer``, ``gloss``, ``text`` (lower case, no full stop),
  ``num_frames``, ``original_info`` and ``tag``; the ``_ml`` file adds ``en_text``,
  ``es_text`` and ``fr_text``. ``scripts/vit_extract_feature.py:81-95`` and
  ``scripts/mae_extract_feature.py:67-81`` read ``<mode>_info.npy`` the same way.
- ``dataset/p14t.py:68,95-99``: the spatial features of clip ``fileid`` are
  ``np.load(<feat_root>/<mode>/<fileid><spatial_postfix>.npy)``; ``:171`` the sample's
  ``num_frames`` is their row count (the info's is not read); ``:57-58``: at least one of
  ``spatial``/``spatiotemporal``. ``scripts/vit_extract_feature.py:40-59,104,135,154-162``:
  float32 ``[T, D]``, one CLIP ViT-L/14 CLS vector per frame (scales 1 and 2 through S2
  wrapping, ``README.md:47-48``: ``D`` = 2048, ``configs/finetune.yaml:10,59``), saved under
  ``<model>_feat_<corpus>/<mode>/``.
- ``dataset/p14t.py:114-127``: motion features at ``<mae_feat_root>/<mode>/<fileid><postfix>
  .npy``; ``scripts/mae_extract_feature.py:24,37-46,83-101,152-157``: VideoMAE-large first
  tokens of 16-frame windows overlapping by 8 (clips under 16 frames repeat their last).
- ``dataset/p14t.py:164-183``: the sample's ``text`` gets a full stop (``:186-199``), ``lang``
  is ``'German'`` whatever the corpus; ``en_text``/``es_text``/``fr_text`` are copied when
  present. ``spamo/t5_slt.py:338``: a clip whose spatial array is empty is skipped;
  ``:349-355`` reads the three texts of every clip, unconditionally, for in-context
  examples used only with ``use_in_context`` (``:201-202``); ``:345`` lower-cases ``text``.
- ``spamo/t5_slt.py:164-165``: the spatial projection is ``input_size`` wide (a config key),
  the motion projection fixed at 1024; ``:256-316``: ``fusion_mode: spatial`` runs on the
  spatial stream alone. ``spamo/tconv.py:10,22,53-61`` (``t5_slt.py:169``): two kernel-5
  convolutions and two halvings leave a clip of under 16 rows no visual position.
- ``utils/helpers.py:8-15`` (``t5_slt.py:376``): each batch is deranged, which asserts at
  least two clips. ``main.py:49,99-109``: several ``-c`` files are merged in order.
- ``requirements.txt:12``: numpy 1.26.4, whose ``np.save`` pickles object arrays with
  protocol 3 (``numpy/lib/format.py:719``).

prep's side: ``fileid`` is the manifest id, ``folder`` the clip's path relative to ``prefix``
(the deepest folder holding every clip of the run), a frame glob for frame folders (so
Phoenix14T's entries read as SpaMo's own), ``num_frames`` the manifest's frame count,
``original_info`` the manifest row (SpaMo's holds the annotation line; ``dataset/p14t.py:182``
only passes it on). A shard field ``[T, ...]`` is written as float32 ``[T, D]``
under ``<field>_feat_<corpus>/<split>/<id>.npy``. The info files are ``np.save``'s bytes for
a 0-d object array (the header SpaMo's own files have), pickled without a memo so the bytes
depend on the values only. What prep cannot give (the CLIP and VideoMAE features, the
other-language texts) is listed by :meth:`SpamoExporter.gaps`; none stops the trainer, which
runs its spatial-only mode on prep's features (``spamo-data.yaml`` sets that).
"""

from __future__ import annotations

import logging
import pickle
import posixpath
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PrepError
from pipeline.exporter import Exporter
from pipeline.storage import atomic_file, atomic_write_bytes
from pipeline.video import FrameSelection

log = logging.getLogger(__name__)

CONFIG = "spamo-data.yaml"
PICKLE_PROTOCOL = 3  # numpy 1.26.4's np.save (requirements.txt:12)
OTHER_TEXTS = ("en_text", "es_text", "fr_text")  # spamo/t5_slt.py:349-355
BATCH_SIZE = 8  # configs/finetune.yaml:46
MIN_ROWS = 16  # spamo/tconv.py:22,53-61: fewer rows leave no visual position
MOTION_WIDTH = 1024  # spamo/t5_slt.py:165
DATASET_CLASS = "dataset.p14t.Phoenix14T"  # the one dataset class at aee7f8b
# prep's dataset -> SpaMo's corpus folder name (utils/helpers.py:73-76) and frame glob
CORPORA = {"phoenix14t": ("Phoenix14T", "*.png"), "csl-daily": ("CSL-Daily", "*.jpg")}


def write_npy_dict(path: Path, value: dict) -> Path:
    """``np.save`` of a 0-d object array holding ``value``, as SpaMo loads it with
    ``.item()``: numpy's header, then the array pickled with numpy's protocol, but without a
    memo (whose references follow object identity, not values)."""
    holder = np.empty((), dtype=object)
    holder[()] = value
    header = {"descr": "|O", "fortran_order": False, "shape": ()}
    with atomic_file(path) as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        pickler = pickle.Pickler(handle, protocol=PICKLE_PROTOCOL)
        pickler.fast = True
        pickler.dump(holder)
    return path


def write_npy(path: Path, array: np.ndarray) -> Path:
    """A plain ``.npy`` (no pickle), written atomically: same array, same bytes."""
    with atomic_file(path) as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    return path


class SpamoExporter(Exporter):
    name = "spamo"
    version = 1
    trainer = "eddie-euijun-hwang/SpaMo"
    summary = "<split>_info(_ml).npy label dicts and per-clip float32 [T, D] spatial .npy features"
    default_fields = ("dinov2",)

    @property
    def corpus(self) -> str:
        return CORPORA.get(self.source.dataset, (self.source.dataset, "*"))[0]

    @property
    def anno_root(self) -> Path:
        return self.target / "preprocess" / self.corpus

    def feature_root(self, field: str) -> Path:
        return self.target / f"{field}_feat_{self.corpus}"

    def _stats(self, split: str, field: str) -> list[dict[str, Any]]:
        """The shard index's figures for ``field``, one per shard holding it."""
        shards = (self.source.shard_index(split) or {}).get("shardlist", [])
        return [s["fields"][f"{field}.npy"] for s in shards if f"{field}.npy" in s["fields"]]

    def width(self, field: str) -> int:
        """``D`` of the exported ``[T, D]``: the field's trailing dimensions multiplied."""
        for split in self.splits:
            for stats in self._stats(split, field):
                return int(np.prod(stats["shape_tail"]))
        return 0

    def check(self) -> None:
        if not self.fields:
            return  # the labels alone: nothing in the shards is read
        for split in self.splits:
            held = self.source.shard_fields(split)
            if not held:
                raise PrepError(
                    f"spamo trains on per-frame features and split {split} has no shards: run "
                    "--stage features (or pass --fields , to export the labels alone)"
                )
            missing = [f for f in self.fields if f"{f}.npy" not in held]
            if missing:
                raise PrepError(
                    f"spamo: the {split} shards hold no {', '.join(missing)} field (they hold "
                    f"{', '.join(sorted(held))}); run features with --features including it"
                )
            first = next(self.source.samples(split), None)
            described = first.meta.get("fields", {}) if first else {}
            for field in self.fields:
                per_clip = described.get(f"{field}.npy", {}).get("per_clip")
                if per_clip or any(not s.get("shape_tail") for s in self._stats(split, field)):
                    raise PrepError(
                        f"spamo reads one feature row per frame (dataset/p14t.py:95-99) and "
                        f"{field} is per clip, not per frame: choose a per-frame field, e.g. dinov2"
                    )

    @cached_property
    def parent(self) -> str:
        """The deepest folder holding every clip of the run (all splits, so that a resumed
        or partial export names them the same way), relative to the corpus folder."""
        folders = [
            posixpath.dirname(r["source_path"])
            for split in self.source.splits
            for r in self.source.manifest_rows(split)
        ]
        return posixpath.commonpath(folders) if folders else ""

    @property
    def prefix(self) -> str:
        base = self.source.source_base
        return (base / self.parent).as_posix() if base is not None else self.parent

    def entry(self, row: dict[str, Any]) -> dict[str, Any]:
        """One clip as SpaMo's ``<split>_info.npy`` holds it."""
        folder = posixpath.relpath(row["source_path"], self.parent or ".")
        if row["source_kind"] == "frames":
            folder += "/" + CORPORA.get(self.source.dataset, ("", "*"))[1]
        return {
            "fileid": row["id"],
            "folder": folder,
            "signer": row.get("signer") or "",
            "gloss": row.get("gloss") or "",
            "text": row.get("translation") or "",
            "num_frames": int(row["num_frames"]),
            "original_info": dict(row),
            "tag": self.source.dataset,
        }

    def export_split(self, split: str) -> list[Path]:
        """The split's feature files, then its two info files (last: they never name a clip
        whose features are not written yet; a clip the features stage quarantined is left out,
        so the keys stay ``0..N-1``)."""
        rows = self.source.manifest_rows(split)
        folders = [self.feature_root(field) / split for field in self.fields]
        if self.fields:
            written = self._write_features(split, folders)
            rows = [row for row in rows if row["id"] in written]
        entries = [self.entry(row) for row in rows]
        plain = {"prefix": self.prefix, **dict(enumerate(entries))}
        texts = dict.fromkeys(OTHER_TEXTS, "")
        multi = {"prefix": self.prefix, **{i: {**e, **texts} for i, e in enumerate(entries)}}
        return [
            write_npy_dict(self.anno_root / f"{split}_info.npy", plain),
            write_npy_dict(self.anno_root / f"{split}_info_ml.npy", multi),
            *folders,
        ]

    def _write_features(self, split: str, folders: list[Path]) -> set[str]:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        written, skipped = set(), 0
        for sample in self.source.samples(split, self.fields):
            if any(field not in sample.fields for field in self.fields):
                skipped += 1
                continue
            sample_id = sample.meta["id"]
            for field, folder in zip(self.fields, folders):
                rows = np.asarray(sample.array(field), np.float32)
                write_npy(
                    self.inside_target(folder / f"{sample_id}.npy"), rows.reshape(len(rows), -1)
                )
            written.add(sample_id)
        if skipped:
            log.warning("spamo: %d %s clips without %s left out", skipped, split, self.fields)
        return written

    def _clip_counts(self) -> dict[str, int]:
        """Clips per split as exported: those holding every field, or the manifest's rows."""
        if not self.fields:
            return {s: len(self.source.manifest_rows(s)) for s in self.splits}
        return {
            s: min(sum(int(x.get("samples", 0)) for x in self._stats(s, f)) for f in self.fields)
            for s in self.splits
        }

    def _short_clips(self) -> int:
        """Clips whose feature rows (prep's frame selection, or every frame for SpaMo's own
        features) are too few for SpaMo's temporal encoder."""
        selection = FrameSelection(
            **self.source.provenance(self.source.manifest_stage).get("frame_selection", {})
        )
        rows = [r["num_frames"] for s in self.splits for r in self.source.manifest_rows(s)]
        if self.fields:
            rows = [len(selection.indices(n)) for n in rows]
        return sum(1 for n in rows if n < MIN_ROWS)

    def _spatial_gap(self) -> str:
        field = self.fields[0]
        index = self.source.shard_index(self.splits[0]) or {}
        made = index.get("provenance", {}).get("features", {}).get(field) or {}
        how = f"{made['model']}, {made.get('pooling', '?')} pooling, " if made else ""
        return (
            f"spatial features: prep's {field} ({how}{self.width(field)} wide) stands in for "
            "SpaMo's CLIP ViT-L/14 CLS vectors at scales 1 and 2 (2048 wide; README.md:36-56, "
            "scripts/vit_extract_feature.py:52-59), which prep does not compute; "
            "spamo-data.yaml sets model.params.input_size to its width"
        )

    def gaps(self) -> list[str]:
        found = []
        if self.fields:
            found.append(self._spatial_gap())
        else:
            found.append(
                "labels only (--fields ,): SpaMo needs a spatial feature file for every clip "
                "(dataset/p14t.py:57-58,95-99; spamo/t5_slt.py:338): compute its own with "
                "scripts/vit_extract_feature.py, or export prep's with --fields dinov2"
            )
        found.append(
            "motion features: none; SpaMo's VideoMAE-large windows (16 frames, overlap 8; "
            "README.md:58-72, scripts/mae_extract_feature.py:83-101) are not computed by prep "
            f"and its motion projection is fixed at {MOTION_WIDTH} wide (spamo/t5_slt.py:165), so "
            "the export trains the spatial-only mode (fusion_mode: spatial, spatiotemporal: "
            "false; spamo/t5_slt.py:256-316), not the paper's joint fusion"
        )
        found.append(
            "en_text, es_text and fr_text are empty: prep has no translations into other "
            "languages, which SpaMo reads for every clip (spamo/t5_slt.py:349-355) as in-context "
            "examples; spamo-data.yaml turns use_in_context off (configs/finetune.yaml:25-26 on)"
        )
        languages = {r["language"] for s in self.splits for r in self.source.manifest_rows(s)} - {
            "de"
        }
        if languages:
            found.append(
                f"the corpus language is {', '.join(sorted(map(str, languages)))}, but "
                "Phoenix14T's dataset class names German in every prompt (dataset/p14t.py:173, "
                "spamo/t5_slt.py:198-199): change its 'lang' before training"
            )
        short = self._short_clips()
        if short:
            found.append(
                f"{short} clips have fewer than {MIN_ROWS} feature rows: SpaMo's temporal "
                "encoder (spamo/tconv.py:22,53-61) leaves them no visual position, so only the "
                "prompt reaches the language model for them"
            )
        for split, count in self._clip_counts().items():
            if count % BATCH_SIZE == 1:
                found.append(
                    f"split {split} has {count} clips: its last batch of {BATCH_SIZE} "
                    "(configs/finetune.yaml:46) holds one, which SpaMo's derangement rejects "
                    "(utils/helpers.py:9, spamo/t5_slt.py:376); choose another data.params.batch_size"
                )
        if len(self.fields) > 1:
            found.append(
                f"SpaMo reads one spatial stream: spamo-data.yaml points at {self.fields[0]}; "
                "the other fields' folders sit beside it (change feat_root and input_size)"
            )
        return found

    def finish(self) -> list[Path]:
        """``spamo-data.yaml``: the keys to merge over ``configs/finetune.yaml``."""
        import yaml

        roles = {"train": "train", "validation": "dev" if "dev" in self.splits else "test"}
        roles["test"] = "test"
        datasets = {}
        for role, split in roles.items():
            if split not in self.splits:
                continue
            params: dict[str, Any] = {"anno_root": str(self.anno_root), "mode": split}
            if self.fields:
                params |= {
                    "feat_root": str(self.feature_root(self.fields[0])),
                    "spatial": True,
                    "spatiotemporal": False,
                    "spatial_postfix": "",
                }
            datasets[role] = {"target": DATASET_CLASS, "params": params}
        config: dict[str, Any] = {"data": {"params": datasets}}
        if self.fields:
            config["model"] = {
                "params": {
                    "input_size": self.width(self.fields[0]),
                    "fusion_mode": "spatial",
                    "use_in_context": False,
                }
            }
        path = self.target / CONFIG
        atomic_write_bytes(path, yaml.safe_dump(config, sort_keys=True).encode())
        return [path]

    def instructions(self) -> str:
        return (
            "The files follow SpaMo at commit aee7f8b6ea8201b710690adcce6f46260dd11bba "
            "(2025-07-09), the head of the fork Mohamed-Mohamed-Ibrahim/SpaMo; the official "
            "eddie-euijun-hwang/SpaMo's head (fb1d495, 2024-08-16) has another layout "
            "(`h14t_dataset.py`, no `configs/` or `scripts/`), where the dataset class and "
            "config named here do not exist. In a checkout of that commit, train with its own "
            "config and "
            f"`{CONFIG}` merged over it (later `-c` files win): `python main.py -c "
            f"configs/finetune.yaml {self.target / CONFIG} -e bleu`. The fragment points "
            "`data.params.train`, `validation` (dev, where SpaMo's config validates on test) and "
            f"`test` at `{self.anno_root}` and the features, with `spatiotemporal: false`, "
            "`model.params.fusion_mode: spatial`, `input_size` the features' width and "
            "`use_in_context: false` (the other-language texts are empty). For SpaMo's own "
            "CLIP/VideoMAE features of Phoenix14T or CSL-Daily, run its "
            f"`scripts/vit_extract_feature.py` and `scripts/mae_extract_feature.py` with "
            f"`--anno_root {self.anno_root}` (they read `<split>_info.npy` and glob each "
            "`folder` under `--video_root`, in its 256x256 copy: utils/helpers.py:71-79), then "
            "set `feat_root`, `mae_feat_root` and the postfixes as `configs/finetune.yaml` does."
        )
