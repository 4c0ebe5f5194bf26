"""``prep export --format sign2gpt``: the files Sign2GPT (ryanwongsa/Sign2GPT) trains on: one
LMDB of JPEG frames per clip, the table its dataloader parses and the pseudo-gloss pickle.

What its code reads and writes (ryanwongsa/Sign2GPT at HEAD, 5555935):

- ``scripts/csldaily/image_lmdb_creator.py:41-93``: one LMDB folder per clip, named by its id;
  every frame (``:60-64``) turned RGB (``:65``), squashed to 256×256 by ``Image.resize``
  (``:66``; Pillow's default filter, bicubic in the pinned Pillow 9.0.1, ``environment.yml:16``),
  saved by ``img.save(temp, format="jpeg")`` (``:68``: quality 75) under keys ``b"0"``,
  ``b"1"``… (``:70-74``), committed every 123 frames (``:78-80``); then ``b"details"`` =
  ``pickle.dumps({"num_frames": n, "id": id}, protocol=4)`` (``:82-86``); ``map_size=2**40``
  (``:45``).
- ``dataloaders/data_utils/lmdb_utils.py:13-34``: opened read-only without a lock file;
  ``pickle.loads`` of ``details``; a frame is ``np.array(Image.open(BytesIO(value)))``.
- ``dataloaders/phoenix_video_dataset.py:119``: ``pd.read_csv(csv_dir, sep="|")`` (``sep``
  from the configs); ``:137`` groups by ``name``; ``:50-54`` opens
  ``f"{lmdb_video_dir}/{name}"``; ``:82-83`` reads ``translation`` and ``orth.split(" ")`` (an
  empty ``orth`` would be NaN); ``:85-92`` the targets: ``dict_lem_to_id[lem]`` for each ``lem``
  of ``dict_sentence[translation]`` with ``dict_lem_counter[lem] / len(dict_sentence) < 0.4``.
- ``dataloaders/csldaily_video_dataset.py:102-119``: ``data.tsv`` read with ``sep="\\t"``, rows
  of ``split``; ``label_gloss``, ``label_char``, ``label_word``, ``label_postag`` go through
  ``eval``; ``:53`` the sentence is ``"".join(label_char)``; ``:46`` the LMDB is
  ``f"{lmdb_video_dir}/{name}"``; ``:74-82`` the same targets.
- ``dataloaders/data_utils/file_utils.py:16-19``: the pseudo-gloss file is a plain pickle;
  ``scripts/pseudo_gloss_de.py:20,47-63,68,79-86`` (``_zn.py:14,54-79,90-97``): a dict
  ``{dict_lem_counter, dict_sentence, dict_lem_to_id}`` over train+dev+test: every row's
  lemmas counted, each sentence's kept lemmas, ids over ``set(all lemmas)``.
- ``models/metaformer/post/zero_fasttext_prototype_head.py:46-60,69,106``: no prototype file is
  read: each ``dict_lem_to_id`` key's fastText ``cc.<emb_lang>.300.bin`` vector goes to row
  ``id`` (ids ``0..V-1``), a zero blank is appended last, the first ``num_classes`` scores kept;
  ``trainer/psuedo_gloss_trainer.py:63`` counts ``len(dict_lem_to_id)`` classes.
- ``configs/phoenix2014t/phoenix_stage1_configs/PHX_example_s1_dyn_config.py:91-96``: files in
  ``{code_path}/data/phoenix2014t/``, LMDBs in ``{lmdb_path}/phoenix2014t/lmdb_videos``
  (``configs/base/base_utils.py:9-11``); ``CSL_example_s1_dyn_config.py:91-95``:
  ``data/csldaily/``, ``{lmdb_path}/combined_dataset/csl-daily/lmdb_videos``. The export has
  that layout: only ``get_lmdb_path()``, ``num_classes`` and ``emb_lang`` change.

Frames: when every clip's own files are reachable they are decoded (every frame, whatever the
manifest's selection: Sign2GPT strides itself) and resized and encoded as the creator does,
which gives its very bytes (tested on mp4 clips against its own loop); otherwise the features
stage's stored frames (``--with-frames --frame-size 256``: its ``--frame-geometry``, JPEG quality,
the selected frames only) are copied unchanged. Same inputs, same bytes: pickles without a
memo, LMDBs written in a fixed order with zeroed pages and no lock file (same OS page size).
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import shutil
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.exporter import Exporter
from pipeline.layout import temporary_sibling
from pipeline.storage import atomic_file, commit_dir
from pipeline.video import DecodeError, FrameSelection, sample_frames
from stages.features.geometry import squash
from stages.pseudo_gloss.vocabulary import VOCAB_FILE

PSEUDO_GLOSS = "pseudo-gloss"
SIZE = 256  # image_lmdb_creator.py:66
QUALITY = 75  # Pillow's default JPEG quality, image_lmdb_creator.py:68
COMMIT_EVERY = 123  # image_lmdb_creator.py:78
MAP_SIZE = 1 << 40  # image_lmdb_creator.py:45
PROTOCOL = 4  # image_lmdb_creator.py:84; pickle.dump's default in Sign2GPT's Python
BATCH = 16  # frames decoded at once
NO_GLOSS = "<none>"  # orth of a clip without glosses: never empty (orth.split(" "))
PHOENIX_HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")
CSL_HEADER = ("name", "length", "label_gloss", "label_char", "label_word", "label_postag", "split")


class Sign2GptExporter(Exporter):
    name = "sign2gpt"
    version = 1
    trainer = "ryanwongsa/Sign2GPT"
    summary = "per-clip LMDBs of 256² JPEG frames, the Phoenix CSVs or CSL data.tsv, the pseudo-gloss pickle"

    @property
    def csl(self) -> bool:
        """CSL-Daily gets its own dataloader's ``data.tsv``; every other corpus Phoenix's CSVs."""
        return self.source.dataset == "csl-daily"

    @property
    def data_dir(self) -> Path:
        return self.target / "data" / ("csldaily" if self.csl else "phoenix2014t")

    @property
    def lmdb_dir(self) -> Path:
        where = "combined_dataset/csl-daily" if self.csl else "phoenix2014t"
        return self.target / "lmdb" / where / "lmdb_videos"

    def check(self) -> None:
        if self.fields:
            raise PrepError("sign2gpt trains on frames, not shard features: drop --fields")
        if not self.source.ran(PSEUDO_GLOSS) or not self._vocab_path.is_file():
            raise PrepError(f"sign2gpt needs pseudo-glosses: run --stage {PSEUDO_GLOSS} first")
        if (why := self.unreachable) is None:
            return
        for split in self.splits:
            index = self.source.shard_index(split)
            size = (index or {}).get("provenance", {}).get("options", {}).get("frame_size")
            if index is None or "frame_*.jpg" not in self.source.shard_fields(split):
                raise PrepError(
                    f"sign2gpt needs each clip's frames: {why} and split {split} has no stored "
                    f"frames; restore the corpus, or run features with --with-frames --frame-size {SIZE}"
                )
            if size != SIZE:
                raise PrepError(
                    f"sign2gpt needs {SIZE}x{SIZE} frames: {why} and the {split} shards store "
                    f"{size}-px ones; restore the corpus, or rerun features with --frame-size {SIZE}"
                )

    @cached_property
    def unreachable(self) -> str | None:
        """Why the clips' own files cannot be decoded (None: they can, with the creator's
        resize and JPEG settings, every frame); then the features stage's stored frames are used."""
        return self.source.unreachable(self.splits)

    def export_split(self, split: str) -> list[Path]:
        """The split's LMDBs, then its table rows (only clips with an LMDB: a clip the
        features stage quarantined has no stored frames)."""
        rows = self.source.manifest_rows(split)
        if self.unreachable is None:
            clips = ((row["id"], self._decoded_jpegs(row)) for row in rows)
        else:
            clips = self._clips_from_shards(split)
        into = self.inside_target  # ids from shards of elsewhere never leave --to
        exported = {write_clip_lmdb(into(self.lmdb_dir / n), n, jpegs).name for n, jpegs in clips}
        kept = [row for row in rows if row["id"] in exported]
        if self.csl:
            self._write_csl_table(split, kept)
            return []  # data.tsv holds every split: listed once, by finish()
        path = self.data_dir / f"PHOENIX-2014-T.{split}.corpus.csv"
        return [write_table(path, "|", PHOENIX_HEADER, (phoenix_row(row) for row in kept))]

    def _decoded_jpegs(self, row: dict) -> Iterator[bytes]:
        """Every frame of the clip as the LMDB creator stores it (image_lmdb_creator.py:65-68)."""
        from PIL import Image

        path = self.source.source_base / row["source_path"]
        try:
            for clip in sample_frames(self.source.source_base, row, FrameSelection(), BATCH):
                for frame in clip.frames:
                    image = Image.fromarray(squash(frame, SIZE))  # Pillow 9/10's pass order
                    buffer = io.BytesIO()
                    image.save(buffer, format="JPEG", quality=QUALITY)
                    yield buffer.getvalue()
        except DecodeError as exc:
            raise PrepError(f"sign2gpt: {row['id']} ({path}): {exc}; rerun the manifest") from exc

    def _clips_from_shards(self, split: str) -> Iterator[tuple[str, list[bytes]]]:
        """The stored ``frame_NNNNN.jpg`` of each sample in frame order, bytes unchanged (a
        second JPEG generation would only lose more)."""
        for sample in self.source.samples(split, ("frame_*",)):
            yield sample.meta["id"], [sample.fields[name] for name in sorted(sample.fields)]

    def _write_csl_table(self, split: str, rows: list[dict]) -> None:
        """``data.tsv`` holds every split (csldaily_video_dataset.py:115): the rows of the splits
        written before this one are kept from the file, this split's are (re)written."""
        path = self.data_dir / "data.tsv"
        earlier = self.splits[: self.splits.index(split)]
        kept: list[list[str]] = []
        if path.is_file() and earlier:
            with open(path, encoding="utf-8", newline="") as handle:
                kept = [r for r in list(csv.reader(handle, delimiter="\t"))[1:] if r[-1] in earlier]
        words = {r["id"]: r for r in self.source.table(PSEUDO_GLOSS, split)}
        fresh = [csl_row(row, words.get(row["id"], {})) for row in rows]
        write_table(path, "\t", CSL_HEADER, [*kept, *fresh])

    def finish(self) -> list[Path]:
        """The pseudo-gloss pickle, over every split of the run (as Sign2GPT's scripts count
        over train, dev and test), whichever splits were exported; the LMDB folder and
        CSL-Daily's ``data.tsv`` are listed here once."""
        table = [self.data_dir / "data.tsv"] if self.csl else []
        words = self.data_dir / f"processed_words.{'csl' if self.csl else 'phx'}_pkl"
        return [*table, self.lmdb_dir, write_pickle(words, self.words)]

    @property
    def _vocab_path(self) -> Path:
        return self.source.layout.stage_file(PSEUDO_GLOSS, VOCAB_FILE)

    @cached_property
    def vocab(self) -> dict[str, Any]:
        return json.loads(self._vocab_path.read_text(encoding="utf-8"))

    @cached_property
    def words(self) -> dict[str, dict]:
        """``{dict_lem_counter, dict_sentence, dict_lem_to_id}`` from prep's tables.

        Ids are prep's train vocabulary less one (prep's id 0 is the blank, Sign2GPT's blank
        is appended last), so class ``i`` is row ``i + 1`` of prep's ``prototypes.npy``.
        Sentences keep only glosses in that vocabulary (the dataloader would fail on any other);
        counts are every row's occurrences in every split, as Sign2GPT counts them.
        """
        glosses = sorted(self.vocab["glosses"], key=lambda g: g["id"])
        if [g["id"] for g in glosses] != list(range(1, len(glosses) + 1)):
            raise PrepError(
                f"{self._vocab_path}: ids are not 1..{len(glosses)}; rerun pseudo-gloss"
            )
        ids = {g["gloss"]: g["id"] - 1 for g in glosses}
        counter = dict.fromkeys(ids, 0)
        sentences: dict[str, list[str]] = {}
        for split in self.source.splits:
            for row in self.source.table(PSEUDO_GLOSS, split):
                kept = [g for g in row["pseudo_glosses"] if g in ids]
                sentences[row["translation"]] = kept
                for gloss in kept:
                    counter[gloss] += 1
        return {"dict_lem_counter": counter, "dict_sentence": sentences, "dict_lem_to_id": ids}

    def gaps(self) -> list[str]:
        meta, lang = self.vocab["provenance"], self.language
        found = [self._frames_gap()]
        if self.csl and self.unreachable is None:
            found.append(
                "Sign2GPT's CSL-Daily frames went through an mp4v video first (video_creator.py:47-53, "
                "image_lmdb_creator.py:51-64); that lossy round trip is not repeated"
            )
        ids = self.words["dict_lem_to_id"]
        outside = [
            g
            for split in self.source.splits
            for row in self.source.table(PSEUDO_GLOSS, split)
            for g in row["pseudo_glosses"]
            if g not in ids
        ]
        found += [
            f"pseudo-glosses come from prep's {meta['pipelines'].get(lang, lang)}, not spaCy's "
            "de_core_news_lg / zh_core_web_sm (pseudo_gloss_de.py:12, pseudo_gloss_zn.py:13)",
            f"dict_lem_to_id is prep's vocabulary over {'+'.join(meta.get('vocabulary_splits', ['train']))} "
            f"({len(ids)} classes, ids in sorted order), where Sign2GPT's covers train+dev+test in "
            "set order (pseudo_gloss_de.py:20,68): "
            f"{len(outside)} pseudo-gloss occurrences ({len(set(outside))} distinct) outside it are "
            "left out of dict_sentence, so they are never targets",
            f"prep's prototypes.npy is not exported: Sign2GPT builds its own from fastText "
            f"cc.{lang}.300.bin (zero_fasttext_prototype_head.py:46-56, zero blank last :69), equal to "
            f"prep's rows 1..V only when prep ran with --fasttext cc.{lang}.300.bin (this run: "
            f"{meta['prototype_source']})",
        ]
        if meta.get("max_gloss_share") is not None:
            found.append(
                f"prep's --max-gloss-share {meta['max_gloss_share']} (by "
                f"{meta.get('gloss_share_by', 'sentences')}) already removed frequent glosses; "
                "the dataloader's own count/sentences < 0.4 filter (phoenix_video_dataset.py:91) also applies"
            )
        if self.csl:
            found.append(
                "label_word and label_postag are prep's words and UPOS tags, not CSL-Daily's "
                "(csldaily_video_dataset.py:116-119 evaluates them, nothing uses them)"
            )
        elif missing := sum(
            1 for s in self.splits for r in self.source.manifest_rows(s) if not r["gloss"]
        ):
            found.append(f"{missing} clips have no gloss: their orth is {NO_GLOSS!r} (never used)")
        return found

    def _frames_gap(self) -> str:
        if self.unreachable is None:
            return (
                "frames decoded from the corpus's own files, every frame, resized and encoded as "
                "image_lmdb_creator.py:65-68 does (PIL bicubic, JPEG quality 75); JPEG bytes depend "
                "on the libjpeg build"
            )
        recorded = (self.source.shard_index(self.splits[0]) or {}).get("provenance", {})
        selection = FrameSelection(**recorded.get("frame_selection", {}))
        options = recorded.get("options", {})
        line = (  # a --frame-geometry keep-aspect frame is the centre square, not the whole frame
            "frames are the features stage's stored JPEGs (--frame-geometry "
            f"{options.get('frame_geometry', 'unrecorded: OpenCV INTER_AREA')}, quality "
            f"{options.get('jpeg_quality')}), not PIL bicubic at quality 75 "
            "(image_lmdb_creator.py:66-68)"
        )
        if selection != FrameSelection():
            line += f"; only the manifest's frames {selection.as_dict()}, strided again by Sign2GPT"
        return line

    @property
    def language(self) -> str:
        rows = self.source.manifest_rows(self.source.splits[0])
        return rows[0]["language"] if rows else ("zh" if self.csl else "de")

    def instructions(self) -> str:
        corpus = "csldaily" if self.csl else "phoenix2014t"
        config = (
            "configs/csldaily/csldaily_stage1_configs/CSL_example_s1_dyn_config.py"
            if self.csl
            else "configs/phoenix2014t/phoenix_stage1_configs/PHX_example_s1_dyn_config.py"
        )
        return (
            f"Copy `{self.data_dir}` to `data/{corpus}/` of your Sign2GPT checkout (its configs read "
            f"`{{code_path}}/data/{corpus}/`), and make `get_lmdb_path()` in "
            f"`configs/base/base_utils.py` return `{self.target / 'lmdb'}`. In the stage-1 config "
            f"(`{config}`) set `post_params['num_classes'] = {len(self.vocab['glosses'])}` (the "
            f"length of `dict_lem_to_id`) and `emb_lang = '{self.language}'`. Then "
            f"`python main.py --config={config}`, then the stage-2 config (it takes the model from "
            "stage 1). The head downloads fastText `cc.<emb_lang>.300.bin` itself. Every corpus "
            "but CSL-Daily goes through Sign2GPT's Phoenix dataloader and file names."
        )


def phoenix_row(row: dict) -> list:
    """One line of the Phoenix CSV; only name, orth and translation are read."""
    start, end = (-1 if t is None else t for t in (row["start"], row["end"]))
    signer, gloss = row["signer"] or "", row["gloss"] or NO_GLOSS
    return [row["id"], row["source_path"], start, end, signer, gloss, row["translation"]]


def csl_row(row: dict, words: dict) -> list:
    """One line of CSL-Daily's ``data.tsv``: lists as Python literals, the sentence as its
    characters (``"".join(label_char)`` gives it back)."""
    return [
        row["id"],
        row["num_frames"],
        repr((row["gloss"] or "").split()),
        repr(list(row["translation"])),
        repr(list(words.get("tokens") or [])),
        repr(list(words.get("upos") or [])),
        row["split"],
    ]


def write_table(path: Path, separator: str, header: Iterable[str], rows: Iterable[list]) -> Path:
    """A delimited text file pandas reads back field for field (minimal quoting, ``\\n``)."""
    with atomic_file(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(text, delimiter=separator, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()
    return path


def write_pickle(path: Path, value: Any) -> Path:
    """A plain pickle written atomically; no memo, so equal values give equal bytes whatever
    objects hold them."""
    with atomic_file(path) as handle:
        pickler = pickle.Pickler(handle, protocol=PROTOCOL)
        pickler.fast = True
        pickler.dump(value)
    return path


def write_clip_lmdb(folder: Path, name: str, jpegs: Iterable[bytes]) -> Path:
    """One clip's LMDB as the creator lays it out, streamed: frames are committed every
    :data:`COMMIT_EVERY` (memory stays bounded on long clips), ``details`` last. Written in a
    hidden sibling folder, then renamed over ``folder``."""
    import lmdb

    tmp = temporary_sibling(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        env = lmdb.open(str(tmp), map_size=MAP_SIZE, subdir=True, lock=False, max_dbs=0)
        try:
            count = 0
            txn = env.begin(write=True)
            for count, data in enumerate(jpegs, start=1):
                txn.put(f"{count - 1}".encode("ascii"), data)
                if count % COMMIT_EVERY == 0:
                    txn.commit()
                    txn = env.begin(write=True)
            details = pickle.dumps({"num_frames": count, "id": name}, protocol=PROTOCOL)
            txn.put(b"details", details)
            txn.commit()
            env.sync(True)
        except BaseException:
            txn.abort()
            raise
        finally:
            env.close()
        commit_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
