"""``prep export --format beyondgloss``: the label files, frame stores, description features
and HaMeR targets that BeyondGloss (elsobhano/BeyondGloss, ``slt_framework/``) trains on.

What its code reads (elsobhano/BeyondGloss at 11eed23, paths under ``slt_framework/``):

- ``dataset/utils.py:58-61``: ``load_dataset_file`` is ``pickle.load(gzip.open(f))``;
  ``dataset/slt_dataset.py:176-178``: the files are ``<labels>.train``, ``.dev``, ``.test``,
  with ``<labels>`` = ``data.labels`` (``pretrain.py:74``, ``finetune.py:112``).
- ``dataset/slt_dataset.py:38,63-65``: the file is a dict whose keys are listed; a value's
  ``name`` (``"<split>/<id>"``) and ``text`` are all the dataset reads (``trim.py:16-21`` reads
  ``text`` too, to trim mBART's vocabulary). ``:67-69``: every sample, in every phase, loads
  frames, HaMeR features and description features: none of the three can be left out.
- ``dataset/slt_dataset.py:74-78,89-93`` with ``dataset/utils.py:62-92``: ``name`` split at its
  ``/`` into split and id; ``<data.lmdb_path>/<split>/<id>.lmdb`` (and the same under
  ``data.desc_path``) is opened with ``lmdb.open(path, readonly=True, lock=False)`` (a folder
  holding ``data.mdb``) and the value of key ``data`` is ``pickle.loads``-ed.
- ``dataset/slt_dataset.py:107-112``: each frame goes through ``np.transpose(img, (1, 2, 0))``
  and ``Image.fromarray``: a ``uint8`` RGB array ``[3, H, W]``; ``:101,118-120``: resized to
  256x256 and cropped to 224 (any stored size is accepted); ``:96-97``: at most
  ``data.max_length`` frames are kept (``configs/config.yaml:6``: 300).
- ``dataset/slt_dataset.py:78,148``: ``torch.from_numpy`` of the description value, batches
  joined with ``torch.cat(..., 0)``: a float array ``[1, D]`` per clip. ``models/clip_models.py
  :365,388,449,563,574``: it is compared by cosine similarity with a pooled ``[B, 1024]``
  projection, so ``D`` must be 1024; the width is hard-coded (``model.embed_dim``,
  ``configs/config.yaml:20``, is never read).
- ``dataset/utils.py:94-102``: HaMeR features at ``<data.hamer_path>/<split>/<id>/<id>.lzma``,
  ``pickle.load(lzma.open(f))["features"]``; ``dataset/slt_dataset.py:84-87,149-150``:
  ``torch.from_numpy``, cut at ``max_length``, zero-padded per batch. ``models/clip_models.py
  :354,376-379`` and ``models/Pretrain_Model.py:182-189``: an L2 target ``[T, 288]`` for a
  prediction per frame (padded to the batch's longest clip,
  ``models/spatial_models/frame_models/dino_adaptor_model.py:73-81``), so ``T`` must equal
  the clip's frame count.

prep's side: the frames are the JPEGs the features stage stored (``--with-frames``), decoded
to RGB; ``hamer.npy`` is float16 ``[T, 288]`` on the same frames (``stages/hands/encoders.py``:
left then right ``hand_pose`` 15x3x3, then left then right ``global_orient`` 3x3), written as
float32; ``caption_emb.npy`` is the per-clip description embedding of hand-captions,
zero-padded to 1024 when narrower (cosine similarities between descriptions are unchanged).
Arrays are pickled as ``numpy.ndarray(shape, dtype, bytearray)``, which numpy 1 and 2 both
load, and which depends on the values only: the same run gives the same bytes.
"""

from __future__ import annotations

import io
import logging
import lzma
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from exporters.lmdb_files import write_lmdb
from exporters.pickles import PROTOCOL, write_gzip_pickle
from pipeline.errors import PrepError
from pipeline.exporter import Exporter, ShardSample
from pipeline.storage import atomic_write_bytes

log = logging.getLogger(__name__)

LABELS, FRAMES, DESC, HAMER = "labels", "lmdb", "desc_feat", "hamer"
CONFIG = "beyondgloss-data.yaml"
KEY = b"data"  # dataset/utils.py:79
TRAINER_SPLITS = ("train", "dev", "test")  # dataset/slt_dataset.py:176-178
DESC_WIDTH = 1024  # models/clip_models.py:365
HAMER_WIDTH = 288  # models/clip_models.py:354
TRAINER_SIDE = 256  # dataset/slt_dataset.py:101
MAX_LENGTH = 300  # configs/config.yaml:6
FRAME_FIELD, HAMER_FIELD, CAPTION_FIELD = "frame_*.jpg", "hamer.npy", "caption_emb.npy"
CAPTIONS_STAGE = "hand-captions"


class PlainArray:
    """Pickles as ``numpy.ndarray(shape, dtype, bytearray(data))``: a writable array after
    loading, named by a global that every numpy has (numpy's own pickles name
    ``numpy.core`` or ``numpy._core`` helpers, depending on the version that wrote them)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    def __reduce__(self) -> tuple:
        data = bytearray(self.array.tobytes())
        return (np.ndarray, (self.array.shape, self.array.dtype.str, data))


def pickled(value: Any) -> bytes:
    """``pickle.dumps`` without a memo: the bytes depend on the values, not on object ids."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=PROTOCOL)
    pickler.fast = True
    pickler.dump(value)
    return buffer.getvalue()


def write_lzma_pickle(path: Path, value: Any) -> Path:
    """``lzma(pickle(value))`` as ``lzma.open`` reads it (xz, CRC64); xz has no timestamp."""
    packed = lzma.compress(pickled(value), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    atomic_write_bytes(path, packed)
    return path


def frame_chw(data: bytes, sample_id: str) -> np.ndarray:
    """A stored JPEG as the trainer's frame: uint8 RGB ``[3, H, W]``."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PrepError(f"beyondgloss: {sample_id}: a stored frame is not a readable JPEG")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1))


def description(vector: np.ndarray, sample_id: str) -> np.ndarray:
    """float32 ``[1, 1024]``: the embedding, zero-padded to the width the model compares with."""
    flat = np.asarray(vector, np.float32).reshape(-1)
    if len(flat) > DESC_WIDTH:
        raise PrepError(
            f"beyondgloss: {sample_id}: caption_emb is {len(flat)} wide, over {DESC_WIDTH}"
        )
    padded = np.zeros((1, DESC_WIDTH), np.float32)
    padded[0, : len(flat)] = flat
    return padded


class BeyondGlossExporter(Exporter):
    name = "beyondgloss"
    version = 1
    trainer = "elsobhano/BeyondGloss"
    summary = (
        "labels.<split> gzip pickles, per-clip frame and description LMDBs, HaMeR lzma pickles"
    )
    default_fields = ("frame_*", "hamer", "caption_emb")

    def check(self) -> None:
        if sorted(self.fields) != sorted(self.default_fields):
            raise PrepError(
                "beyondgloss reads a fixed set of fields (frames, hamer, caption_emb): drop --fields"
            )
        for split in self.splits:
            held = self.source.shard_fields(split)
            if not held:
                raise PrepError(
                    f"beyondgloss needs shards; split {split} has none (run --stage features)"
                )
            if FRAME_FIELD not in held:
                raise PrepError(
                    "beyondgloss trains on frames: run features with --with-frames "
                    f"(the {split} shards hold no frame_*.jpg)"
                )
            if HAMER_FIELD not in held:
                raise PrepError(
                    "beyondgloss loads HaMeR features for every clip (dataset/slt_dataset.py:68): "
                    "run features with --features including hamer and --hamer hamer.ckpt "
                    f"(the {split} shards hold no hamer.npy)"
                )
            if CAPTION_FIELD not in held:
                raise PrepError(
                    "beyondgloss loads a description embedding for every clip "
                    "(dataset/slt_dataset.py:69): run hand-captions with a --text-encoder, then "
                    f"features (the {split} shards hold no caption_emb.npy)"
                )
        width = self.caption_width()
        if width > DESC_WIDTH:
            raise PrepError(
                f"beyondgloss compares descriptions at width {DESC_WIDTH} "
                f"(models/clip_models.py:365), caption_emb is {width} wide: rerun hand-captions "
                "with a --text-encoder of width 1024 or less (mBART-large-50's is 1024)"
            )

    def _field_stats(self, field: str) -> list[tuple[int, dict[str, Any] | None]]:
        """Each shard's sample count and the index's figures for ``field`` (None: absent)."""
        found = []
        for split in self.splits:
            for shard in (self.source.shard_index(split) or {}).get("shardlist", []):
                found.append((int(shard.get("nsamples", 0)), shard["fields"].get(field)))
        return found

    def caption_width(self) -> int:
        """caption_emb's width from the shard index: a per-clip vector adds its length to the
        field's ``rows``, so rows / samples is the width."""
        for _count, stats in self._field_stats(CAPTION_FIELD):
            if stats and stats.get("samples"):
                return int(stats["rows"]) // int(stats["samples"])
        return 0

    def clips_without_captions(self) -> int:
        return sum(n - ((s or {}).get("samples") or 0) for n, s in self._field_stats(CAPTION_FIELD))

    def frame_size(self) -> int | None:
        index = self.source.shard_index(self.splits[0]) or {}
        return index.get("provenance", {}).get("options", {}).get("frame_size")

    def gaps(self) -> list[str]:
        found = self.source.provenance(CAPTIONS_STAGE)
        encoder = (found.get("text_encoder") or {}).get("model", "an unrecorded encoder")
        width = self.caption_width()
        gap = (
            f"description features: caption_emb from {encoder} ({width} wide), not the paper's "
            "mBART-large-50 encoding (slt_framework/README.md:49-51)"
        )
        if width < DESC_WIDTH:
            gap += (
                f"; zero-padded to {DESC_WIDTH}, the width BeyondGloss compares with "
                "(models/clip_models.py:365,574; hard-coded, no config key sets it: "
                "model.embed_dim is never read); rerun hand-captions with --text-encoder "
                "<an mBART-large-50 folder> for the paper's"
            )
        gaps = [gap]
        captioner = found.get("captioner") or {}
        if "sharegpt4video" not in str(captioner.get("model", "")).lower():
            gaps.append(
                f"descriptions: written by {captioner.get('model', 'an unrecorded captioner')} "
                f"({captioner.get('backend', '?')}), not ShareGPT4Video-8B on 16-frame grids "
                "(sign_video_descriptor/README.md:19-20)"
            )
        refiner = (found.get("refiner") or {}).get("model")
        gaps.append(
            f"descriptions: {'refined by ' + str(refiner) if refiner else 'not refined'}; the "
            "paper merges and refines them with GPT-4o-mini (sign_video_descriptor/README.md:25-28)"
        )
        missing = self.clips_without_captions()
        if missing:
            gaps.append(
                f"{missing} clips have no caption_emb (quarantined by hand-captions) and are "
                "left out of the labels: the trainer needs one for every clip"
            )
        gaps.append(
            "HaMeR targets: prep's HaMeR pose (hand_pose then global_orient rotations, left then "
            "right, zeros where a hand is not found), stored as float16 and written as float32; "
            "BeyondGloss fixes only their width, 288 (models/clip_models.py:354)"
        )
        size = self.frame_size()
        if size is not None and size < TRAINER_SIDE:
            gaps.append(
                f"frames: stored at {size}x{size} px and upscaled by the trainer to "
                f"{TRAINER_SIDE}x{TRAINER_SIDE} (dataset/slt_dataset.py:101,118): rerun features "
                f"with --frame-size {TRAINER_SIDE} for full detail"
            )
        index = self.source.shard_index(self.splits[0]) or {}
        geometry = index.get("provenance", {}).get("options", {}).get("frame_geometry")
        if geometry != "squash-crop":
            gaps.append(
                f"frames: stored with --frame-geometry {geometry or 'unrecorded'}, not the whole "
                "frame squashed by PIL bicubic (dataset/slt_dataset.py:118): rerun features "
                "with --frame-geometry squash-crop"
            )
        for split in self.splits:
            if split not in TRAINER_SPLITS:
                gaps.append(
                    f"split {split}: BeyondGloss reads only <labels>.train, .dev and .test "
                    "(dataset/slt_dataset.py:176-178)"
                )
        absent = [s for s in TRAINER_SPLITS if s not in self.splits]
        if absent:
            gaps.append(
                f"no labels.{', labels.'.join(absent)}: its DataModule opens all three "
                "(dataset/slt_dataset.py:206-216); export those splits too"
            )
        return gaps

    def export_split(self, split: str) -> list[Path]:
        folders = [self.target / kind / split for kind in (FRAMES, DESC, HAMER)]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        lengths: dict[str, int] = {}
        skipped = 0
        for sample in self.source.samples(split, self.default_fields):
            if "caption_emb" not in sample.fields:
                skipped += 1
                continue
            lengths[sample.meta["id"]] = self._write_clip(split, sample)
        if skipped:
            log.warning("beyondgloss: %d %s clips without caption_emb left out", skipped, split)
        labels: dict[str, dict[str, Any]] = {}
        for row in self.source.manifest_rows(split):
            if row["id"] not in lengths:
                continue  # quarantined: nothing to train on
            name = f"{split}/{row['id']}"
            labels[name] = {
                "name": name,
                "text": row.get("translation") or "",
                "gloss": row.get("gloss") or "",
                "length": lengths[row["id"]],
            }
        # the labels last: a label file never names a clip whose files are not written yet
        return [write_gzip_pickle(self.target / f"{LABELS}.{split}", labels), *folders]

    def _write_clip(self, split: str, sample: ShardSample) -> int:
        """One clip's frame store, description store and HaMeR file; returns its frame count."""
        sample_id = sample.meta["id"]
        names = sorted(n for n in sample.fields if n.startswith("frame_"))  # frame order
        hamer = np.asarray(sample.array("hamer"), np.float32)
        if hamer.shape != (len(names), HAMER_WIDTH):
            raise PrepError(
                f"beyondgloss: {sample_id}: hamer.npy is {list(hamer.shape)} for "
                f"{len(names)} stored frames; rerun features"
            )
        frames = [PlainArray(frame_chw(sample.fields[n], sample_id)) for n in names]
        write_lmdb(
            self.inside_target(self.target / FRAMES / split / f"{sample_id}.lmdb"),
            {KEY: pickled(frames)},
        )
        described = PlainArray(description(sample.array("caption_emb"), sample_id))
        write_lmdb(
            self.inside_target(self.target / DESC / split / f"{sample_id}.lmdb"),
            {KEY: pickled(described)},
        )
        write_lzma_pickle(
            self.inside_target(self.target / HAMER / split / sample_id / f"{sample_id}.lzma"),
            {"features": PlainArray(hamer)},
        )
        return len(names)

    def finish(self) -> list[Path]:
        import yaml

        data = {
            "labels": str(self.target / LABELS),
            "lmdb_path": str(self.target / FRAMES),
            "desc_path": str(self.target / DESC),
            "hamer_path": str(self.target / HAMER),
            "max_length": MAX_LENGTH,
        }
        path = self.target / CONFIG
        atomic_write_bytes(path, yaml.safe_dump({"data": data}, sort_keys=True).encode())
        return [path]

    def instructions(self) -> str:
        return (
            f"Put the `data:` keys of `{CONFIG}` into a copy of BeyondGloss's "
            "`slt_framework/configs/config.yaml` (they replace `lmdb_path`, `labels`, "
            "`desc_path`, `hamer_path` and `max_length`; keep its `model:`, `training:` and "
            "`save:` keys). Build the trimmed mBART from these sentences: `trim.py` reads "
            f"`data/labels.train`, so point it at `{self.target / LABELS}.train`. Then, from "
            "`slt_framework/`, pre-train with `./launch.sh python pretrain.py --data_config "
            "your-config.yaml --landa_desc 0.5 --landa_hamer 0.3` and fine-tune with "
            "`./launch.sh python finetune.py --data_config your-config.yaml`. Keep `--data_ver 0` "
            "(another value appends `-N` to `lmdb_path`). Description features are 1024 wide "
            "as the model requires; see the differences above for what they were encoded with."
        )
