"""``prep export --format sign2gpt`` read back the way ryanwongsa/Sign2GPT (HEAD 5555935)
reads it: its LMDB utility, its two dataloaders and its prototype head, re-implemented here
from its source (file:line on each), run on our own files (trusted: tests may unpickle them).

pandas is not installed here: ``csv`` with the same quoting stands in for ``pd.read_csv``, and
the fields the dataloaders use are checked to be ones pandas would not turn into NaN.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import pickle
import re
import shutil
from collections import Counter
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from exporters.sign2gpt import NO_GLOSS, PHOENIX_HEADER, phoenix_row, write_table
from pipeline import synthetic
from pipeline.exporter import ExportSource
from pipeline.shards import iter_tar_samples
from tests.conftest import prep

STRIDE, MAX_SEQ_LEN = 2, 256  # PHX_example_s1_dyn_config.py:29-30 (and CSL_..._config.py)
PANDAS_NA = {
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
}
SPLITS = ("train", "dev", "test")


def read_pickle(file_path):
    """dataloaders/data_utils/file_utils.py:16-19."""
    with open(file_path, "rb") as f:
        return pickle.load(f)


class LMDBUtility:
    """dataloaders/data_utils/lmdb_utils.py:9-35."""

    def __init__(self, lmdb_dir):
        self.lmdb_dir = lmdb_dir
        with lmdb.open(
            path=f"{lmdb_dir}", readonly=True, readahead=False, lock=False, meminit=False
        ).begin(write=False) as txn:
            self.details = pickle.loads(txn.get(key="details".encode("ascii")))
            self.entries = txn.stat()["entries"]  # ours: no stray keys

    def get_frames(self, selection):
        with lmdb.open(
            path=f"{self.lmdb_dir}", readonly=True, readahead=False, lock=False, meminit=False
        ).begin(write=False) as txn:
            return [
                np.array(Image.open(io.BytesIO(txn.get(key=f"{idx}".encode("ascii")))))
                for idx in selection
            ]


def read_table(path: Path, sep: str, used: tuple[str, ...]) -> list[dict]:
    """``pd.read_csv(path, sep=sep)``'s rows, for string fields (see the module docstring)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=sep))
    assert all(
        row[c] not in PANDAS_NA and not re.fullmatch(r"-?\d+", row[c]) for row in rows for c in used
    )
    return rows


def pseudo_gloss_ids(sentence, words):
    """phoenix_video_dataset.py:84-92 (csldaily_video_dataset.py:74-82 is the same)."""
    dict_sentence, dict_lem_to_id = words["dict_sentence"], words["dict_lem_to_id"]
    dict_lem_counter = words["dict_lem_counter"]
    ids = []
    if sentence in dict_sentence:
        lems = dict_sentence[sentence]
        ids = [
            dict_lem_to_id[lem] for lem in lems if dict_lem_counter[lem] / len(dict_sentence) < 0.4
        ]
    return ids


def load_clip(lmdb_video_dir, name):
    """phoenix_video_dataset.py:49-81 with isValid (every ``stride``-th frame), no transform."""
    util = LMDBUtility(f"{lmdb_video_dir}/{name}")
    num_frames = util.details["num_frames"]
    selection = np.arange(0, num_frames, STRIDE).astype(int)
    assert len(selection) <= MAX_SEQ_LEN
    return util, np.stack(util.get_frames(selection))


def phoenix_items(csv_dir, lmdb_video_dir, words):
    """phoenix_video_dataset.py:116-150 and :45-113: one dataset per ``name`` group."""
    items = []
    for item in read_table(csv_dir, "|", ("name", "orth", "translation")):
        util, frames = load_clip(lmdb_video_dir, item["name"])
        sentence = item["translation"]
        glosses = item["orth"].split(" ")
        items.append(
            (item["name"], util, frames, sentence, glosses, pseudo_gloss_ids(sentence, words))
        )
    return items


def csl_items(tsv_dir, split, lmdb_video_dir, words):
    """csldaily_video_dataset.py:96-136 and :43-93 (``ast.literal_eval`` for its ``eval``)."""
    rows = [r for r in read_table(tsv_dir, "\t", ("name", "split")) if r["split"] == split]
    items = []
    for row in rows:
        for column in ("label_gloss", "label_char", "label_word", "label_postag"):
            row[column] = ast.literal_eval(row[column])
        util, frames = load_clip(lmdb_video_dir, row["name"])
        sentence = "".join(row["label_char"])
        items.append((row["name"], util, frames, sentence, row, pseudo_gloss_ids(sentence, words)))
    return items


def prototype_head_vocab(dict_lem_to_id, get_word_vector) -> np.ndarray:
    """zero_fasttext_prototype_head.py:53-60,69: rows by id, the zero blank appended last
    (``[300, V+1, 1]`` there; ``[V+1, 300]`` here)."""
    vector = np.zeros((len(dict_lem_to_id), 300), np.float32)
    for key, value in dict_lem_to_id.items():
        vector[value] = get_word_vector(key)
    return np.concatenate([vector, np.zeros((1, 300), np.float32)])


def export(out, target, *extra):
    result = prep("export", "--format", "sign2gpt", "--out", out, "--to", target, *extra)
    assert result.exit_code == 0, result.output
    return target


def prep_tables(out: Path, stage: str) -> dict[str, list[dict]]:
    return {s: pq.read_table(out / stage / f"{s}.parquet").to_pylist() for s in SPLITS}


def expected_targets(out: Path) -> dict[str, list[int]]:
    """What the dataloader should give each translation, from prep's own tables: prep's ids
    less one, glosses outside the train vocabulary dropped, then Sign2GPT's 0.4 filter over
    the counts of every split."""
    rows = [r for table in prep_tables(out, "pseudo-gloss").values() for r in table]
    counts = Counter(
        g for r in rows for g, i in zip(r["pseudo_glosses"], r["pseudo_gloss_ids"]) if i > 0
    )
    sentences = len({r["translation"] for r in rows})
    return {
        r["translation"]: [
            i - 1
            for g, i in zip(r["pseudo_glosses"], r["pseudo_gloss_ids"])
            if i > 0 and counts[g] / sentences < 0.4
        ]
        for r in rows
    }


def check_words(out: Path, words: dict) -> None:
    """The pickle's three dicts against prep's vocabulary, tables and prototypes."""
    assert list(words) == ["dict_lem_counter", "dict_sentence", "dict_lem_to_id"]
    vocab = json.loads((out / "pseudo-gloss" / "vocab.json").read_text())["glosses"]
    assert words["dict_lem_to_id"] == {g["gloss"]: g["id"] - 1 for g in vocab}
    assert sorted(words["dict_lem_to_id"].values()) == list(range(len(vocab)))
    assert set(words["dict_lem_counter"]) == set(words["dict_lem_to_id"])
    rows = [r for table in prep_tables(out, "pseudo-gloss").values() for r in table]
    assert set(words["dict_sentence"]) == {r["translation"] for r in rows}
    prototypes = np.load(out / "pseudo-gloss" / "prototypes.npy")
    by_gloss = {g["gloss"]: prototypes[g["id"]] for g in vocab}
    head = prototype_head_vocab(words["dict_lem_to_id"], by_gloss.__getitem__)
    assert np.array_equal(head, np.roll(prototypes, -1, axis=0))  # prep's blank row 0 -> last


def sign2gpt_jpeg(path: Path) -> bytes:
    """image_lmdb_creator.py:65-68 on one source frame: RGB, resize((256, 256)), JPEG."""
    img = Image.open(path).convert("RGB").resize((256, 256))
    temp = io.BytesIO()
    img.save(temp, format="jpeg")
    return temp.getvalue()


def test_phoenix_frame_folders_read_back_as_sign2gpt_reads_them(prepared_phoenix, tmp_path):
    target = export(prepared_phoenix, tmp_path / "s2g")
    data, videos = (
        target / "data" / "phoenix2014t",
        target / "lmdb" / "phoenix2014t" / "lmdb_videos",
    )
    words = read_pickle(data / "processed_words.phx_pkl")
    check_words(prepared_phoenix, words)
    targets = expected_targets(prepared_phoenix)
    base = ExportSource(prepared_phoenix).source_base
    for split, manifest in prep_tables(prepared_phoenix, "manifest").items():
        items = phoenix_items(data / f"PHOENIX-2014-T.{split}.corpus.csv", videos, words)
        assert [item[0] for item in items] == [row["id"] for row in manifest]
        for (name, util, frames, sentence, glosses, ids), row in zip(items, manifest):
            assert util.details == {"num_frames": row["num_frames"], "id": name}
            assert util.entries == row["num_frames"] + 1  # b"0".. and b"details"
            assert frames.dtype == np.uint8
            assert frames.shape == (len(range(0, row["num_frames"], STRIDE)), 256, 256, 3)
            assert sentence == row["translation"] and glosses == row["gloss"].split(" ")
            assert ids == targets[sentence]
    # every frame, in order, exactly as Sign2GPT's creator makes it from the source frame
    row = prep_tables(prepared_phoenix, "manifest")["dev"][0]
    sources = sorted((base / row["source_path"]).glob("images*.png"))
    with lmdb.open(str(videos / row["id"]), readonly=True, lock=False).begin() as txn:
        assert [txn.get(f"{i}".encode()) for i in range(len(sources))] == [
            sign2gpt_jpeg(p) for p in sources
        ]
    readme = (target / "EXPORT.md").read_text()
    assert f"post_params['num_classes'] = {len(words['dict_lem_to_id'])}" in readme
    assert "emb_lang = 'de'" in readme and "decoded from the corpus's own files" in readme
    assert "vocabulary over train (" in readme and "prototypes.npy is not exported" in readme


def tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def test_the_same_run_gives_the_same_bytes(prepared_phoenix, tmp_path):
    first = tree(export(prepared_phoenix, tmp_path / "a"))
    names = ("EXPORT.md", ".prep-export.json")  # they name the target folder
    assert tree(export(prepared_phoenix, tmp_path / "b"), names) == tree(tmp_path / "a", names)
    assert first == tree(export(prepared_phoenix, tmp_path / "a"))  # done again, in place
    assert not [name for name in first if ".tmp-" in name or name.endswith("lock.mdb")]


def test_a_run_without_pseudo_glosses_is_refused_in_one_line(tmp_path, generic_csv):
    out = tmp_path / "out"
    run = ["--dataset", "generic", "--root", generic_csv, "--out", out, "--quiet"]
    assert prep("run", "--stage", "manifest", *run).exit_code == 0
    result = prep("export", "--format", "sign2gpt", "--out", out, "--to", tmp_path / "x")
    assert result.exit_code == 1 and "run --stage pseudo-gloss" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_clip_without_glosses_gets_an_orth_pandas_keeps_and_text_survives_quoting(tmp_path):
    text = 'er sagt "ja" | nein'
    row = {"id": "c1", "source_path": "clips/c1.mp4", "start": None, "end": 2.5}
    row |= {"signer": None, "gloss": None, "translation": text}
    path = write_table(tmp_path / "t.csv", "|", PHOENIX_HEADER, [phoenix_row(row)])
    (item,) = read_table(path, "|", ("name", "orth", "translation"))
    assert item["orth"] == NO_GLOSS and item["orth"].split(" ") == [NO_GLOSS]
    assert item["translation"] == text and (item["start"], item["end"]) == ("-1", "2.5")


@pytest.fixture(scope="module")
def stored_frames_runs(tmp_path_factory, tiny_dinov2) -> dict:
    """A video corpus prepared twice, frames stored at 256 and at 64 px, exported once from
    its own files, then moved away: only the shards' frames are left to export."""
    folder = tmp_path_factory.mktemp("sign2gpt-stored")
    samples = synthetic.default_samples("de", clips=6, frames=(6, 12))
    corpus = synthetic.write_generic(folder / "corpus", samples, "de", size=(64, 48))
    runs = {}
    for size in (256, 64):
        out = folder / f"out{size}"
        where = ["--dataset", "generic", "--root", corpus, "--out", out, "--quiet"]
        for stage in ("manifest", "pseudo-gloss"):
            assert prep("run", "--stage", stage, *where).exit_code == 0
        frames = ["--dinov2", tiny_dinov2, "--with-frames", "--frame-size", size]
        result = prep("run", "--stage", "features", *where, *frames)
        assert result.exit_code == 0, result.output
        runs[size] = out
    runs["source"] = export(runs[256], folder / "from-source")
    runs["corpus"] = Path(shutil.move(folder / "corpus", folder / "moved"))
    return runs


def image_lmdb_creator(video_path: str) -> list[bytes]:
    """scripts/csldaily/image_lmdb_creator.py:51-76: the values it puts under b"0", b"1"..."""
    cap = cv2.VideoCapture(video_path)
    values = []
    while True:
        ret = cap.grab()
        if not ret:
            break
        ret, frame = cap.retrieve()
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        img = Image.fromarray(frame).resize((256, 256))
        temp = io.BytesIO()
        img.save(temp, format="jpeg")
        temp.seek(0)
        values.append(temp.read())
    return values


def test_video_files_give_the_bytes_of_sign2gpts_own_lmdb_creator(stored_frames_runs):
    videos = stored_frames_runs["source"] / "lmdb" / "phoenix2014t" / "lmdb_videos"
    for row in prep_tables(stored_frames_runs[256], "manifest")["train"]:
        util = LMDBUtility(videos / row["id"])
        assert util.details == {"num_frames": row["num_frames"], "id": row["id"]}
        with lmdb.open(str(videos / row["id"]), readonly=True, lock=False).begin() as txn:
            ours = [txn.get(f"{i}".encode()) for i in range(row["num_frames"])]
        assert ours == image_lmdb_creator(str(stored_frames_runs["corpus"] / row["source_path"]))


def test_video_corpora_without_their_files_export_the_stored_frames(stored_frames_runs, tmp_path):
    out = stored_frames_runs[256]
    target = export(out, tmp_path / "s2g")
    data, videos = (
        target / "data" / "phoenix2014t",
        target / "lmdb" / "phoenix2014t" / "lmdb_videos",
    )
    words = read_pickle(data / "processed_words.phx_pkl")
    check_words(out, words)
    targets = expected_targets(out)
    for split in SPLITS:
        stored = {}
        for tar in sorted((out / "shards" / split).glob("*.tar")):
            for _key, fields in iter_tar_samples(tar):
                names = sorted(f for f in fields if f.startswith("frame_"))
                stored[json.loads(fields["json"])["id"]] = [fields[f] for f in names]
        items = phoenix_items(data / f"PHOENIX-2014-T.{split}.corpus.csv", videos, words)
        assert [item[0] for item in items] == list(stored)
        for name, util, frames, sentence, _glosses, ids in items:
            assert util.details == {"num_frames": len(stored[name]), "id": name}
            assert frames.shape[1:] == (256, 256, 3) and ids == targets[sentence]
            with lmdb.open(str(videos / name), readonly=True, lock=False).begin() as txn:
                assert [txn.get(f"{i}".encode()) for i in range(len(stored[name]))] == stored[name]
    assert (
        "stored JPEGs (--frame-geometry keep-aspect, quality 90)"
        in (target / "EXPORT.md").read_text()
    )


def test_stored_frames_of_another_size_are_refused_in_one_line(stored_frames_runs, tmp_path):
    result = prep(
        "export", "--format", "sign2gpt", "--out", stored_frames_runs[64], "--to", tmp_path / "x"
    )
    assert result.exit_code == 1, result.output
    assert "is not reachable" in result.output and "--frame-size 256" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def prepared_csl(tmp_path_factory) -> Path:
    """A CSL-Daily corpus with a manifest and pseudo-glosses: frames come from its folders."""
    folder = tmp_path_factory.mktemp("sign2gpt-csl")
    samples = synthetic.default_samples("zh", clips=8, frames=(5, 9))
    root = synthetic.write_csl_daily(folder / "corpus", samples, size=(48, 48))
    where = ["--dataset", "csl-daily", "--root", root, "--out", folder / "out", "--quiet"]
    for stage in ("manifest", "pseudo-gloss"):
        result = prep("run", "--stage", stage, *where)
        assert result.exit_code == 0, result.output
    return folder / "out"


def test_csl_daily_gets_its_data_tsv_and_resumes_to_the_same_bytes(prepared_csl, tmp_path):
    target = export(prepared_csl, tmp_path / "s2g")
    data = target / "data" / "csldaily"
    videos = target / "lmdb" / "combined_dataset" / "csl-daily" / "lmdb_videos"
    words = read_pickle(data / "processed_words.csl_pkl")
    check_words(prepared_csl, words)
    targets = expected_targets(prepared_csl)
    glosses = prep_tables(prepared_csl, "pseudo-gloss")
    for split, manifest in prep_tables(prepared_csl, "manifest").items():
        items = csl_items(data / "data.tsv", split, videos, words)
        assert [item[0] for item in items] == [row["id"] for row in manifest]
        for (name, util, frames, sentence, row, ids), clip, tagged in zip(
            items, manifest, glosses[split]
        ):
            assert util.details == {"num_frames": clip["num_frames"], "id": name}
            assert frames.shape == (len(range(0, clip["num_frames"], STRIDE)), 256, 256, 3)
            assert sentence == clip["translation"] and ids == targets[sentence]
            assert (
                row["label_gloss"] == clip["gloss"].split()
                and row["label_word"] == tagged["tokens"]
            )
    assert "mp4v video first" in (target / "EXPORT.md").read_text()
    # an export stopped after train resumes with dev and test, to the same bytes
    fresh = tree(target)
    record = json.loads((target / ".prep-export.json").read_text())
    record["complete"], record["done"] = False, {"splits": ["train"], "files": []}
    (target / ".prep-export.json").write_text(json.dumps(record))
    assert tree(export(prepared_csl, target)) == fresh
