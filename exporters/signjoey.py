"""``prep export --format signjoey``: the annotation files of Sign Language Transformers
(neccam/slt, "signjoey"), one gzip pickle per split and feature stream.

What its code reads (neccam/slt at HEAD):

- ``signjoey/dataset.py:13-16``: ``load_dataset_file`` is ``pickle.load(gzip.open(f))``.
- ``signjoey/dataset.py:55-74``: the file is a list of dicts with ``name``, ``signer``,
  ``gloss``, ``text`` and ``sign``; files listed together for one split are joined by
  ``name`` and their ``sign`` tensors concatenated along dimension 1 (several streams).
- ``signjoey/dataset.py:84-87``: ``sign + 1e-8`` (a float tensor ``[T, D]``), ``gloss`` and
  ``text`` stripped.
- ``signjoey/data.py:50-62`` with ``configs/sign.yaml``: ``data_path`` joined with the
  ``train``/``dev``/``test`` file names (a list for several streams), and ``feature_size``
  (a list of each stream's ``D``).

Names are ``<split>/<id>`` as in the Phoenix14T files the authors distributed. A field with
more than one value per frame (``hands``: ``[T, 2, 112]``) is flattened to ``[T, D]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from exporters.pickles import StreamedList, TorchTensor, write_gzip_pickle
from pipeline.errors import PrepError
from pipeline.exporter import Exporter
from pipeline.storage import atomic_write_bytes


class SignJoeyExporter(Exporter):
    name = "signjoey"
    version = 1
    trainer = "neccam/slt"
    summary = (
        "gzip-pickled lists of {name, signer, gloss, text, sign [T, D]}, one per split and field"
    )
    default_fields = ("dinov2",)

    def check(self) -> None:
        if not self.fields:
            raise PrepError(
                "signjoey needs at least one per-frame field: pass --fields, e.g. dinov2"
            )
        for split in self.splits:
            held = self.source.shard_fields(split)
            if not held:
                raise PrepError(
                    f"signjoey needs shards; split {split} has none (run --stage features)"
                )
            missing = [f for f in self.fields if f"{f}.npy" not in held]
            if missing:
                raise PrepError(
                    f"signjoey: the {split} shards hold no {', '.join(missing)} field "
                    f"(they hold {', '.join(sorted(held))}); run features with --features including it"
                )

    def gaps(self) -> list[str]:
        return [
            "the sign streams are prep's shard fields "
            f"({', '.join(self.fields)}), not the 1024-wide CNN features of the Phoenix14T files "
            "the signjoey authors distributed: set feature_size from signjoey-data.yaml"
        ]

    def file_name(self, field: str, split: str) -> str:
        return f"{self.source.dataset}.{field}.{split}"

    def export_split(self, split: str) -> list[Path]:
        manifest = {row["id"]: row for row in self.source.manifest_rows(split)}
        written = []
        for field in self.fields:
            entries = self._entries(split, field, manifest)
            written.append(
                write_gzip_pickle(self.target / self.file_name(field, split), StreamedList(entries))
            )
        return written

    def _entries(
        self, split: str, field: str, manifest: dict[str, dict]
    ) -> Iterator[dict[str, Any]]:
        for sample in self.source.samples(split, (field,)):
            row = manifest[sample.meta["id"]]
            features = np.asarray(sample.array(field), np.float32)
            yield {
                "name": f"{split}/{row['id']}",
                "signer": row.get("signer") or "",
                "gloss": row.get("gloss") or "",
                "text": row.get("translation") or "",
                "sign": TorchTensor(features.reshape(len(features), -1)),
            }

    def feature_sizes(self) -> list[int]:
        """Each field's ``D`` as signjoey's ``feature_size`` wants it, from the shards' index."""
        index = self.source.shard_index(self.splits[0]) or {}
        sizes = []
        for field in self.fields:
            stats = next(
                s["fields"][f"{field}.npy"]
                for s in index["shardlist"]
                if f"{field}.npy" in s["fields"]
            )
            sizes.append(int(np.prod(stats["shape_tail"])))
        return sizes

    def finish(self) -> list[Path]:
        import yaml

        data: dict[str, Any] = {"data_path": str(self.target)}
        for split in ("train", "dev", "test"):
            if split in self.splits:
                names = [self.file_name(f, split) for f in self.fields]
                data[split] = names if len(names) > 1 else names[0]
        sizes = self.feature_sizes()
        data["feature_size"] = sizes if len(sizes) > 1 else sizes[0]
        path = self.target / "signjoey-data.yaml"
        atomic_write_bytes(path, yaml.safe_dump({"data": data}, sort_keys=True).encode())
        return [path]

    def instructions(self) -> str:
        return (
            "Merge the `data:` keys of `signjoey-data.yaml` into your signjoey config (e.g. a copy "
            "of neccam/slt's `configs/sign.yaml`; keep its `sgn: sign`, `txt: text`, `gls: gloss`, "
            "`level`, `txt_lowercase`), then run `python -m signjoey train your-config.yaml`. "
            "`feature_size` is the width of each exported field. Glosses are empty where the "
            "corpus has none: train translation only (`recognition_loss_weight: 0.0`)."
        )
