"""Text as files really spell it, through the CLI: decomposed umlauts, zero-width characters,
soft hyphens, byte order marks, full-width digits, other delimiters and encodings, long ids."""

from __future__ import annotations

import csv
import io
import unicodedata
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import manifest as m
from stages.manifest.candidates import MAX_ID_CHARS
from stages.manifest.text import TEXT_NORMALISATION, normalised
from tests.conftest import manifest_rows, quarantine_rows, run_generic
from tests.test_bad_inputs import write_clip

COLUMNS = ["id", "path", "text", "language", "split", "gloss"]
SENTENCE = "im süden wird es größer und wärmer"
GLOSSES = ["süden", "groß", "warm"]  # HanTa's pseudo-glosses of SENTENCE (NFC)
NFD = unicodedata.normalize("NFD", SENTENCE)


def write_corpus(
    folder: Path, rows: list[dict], *, delimiter: str = ",", bom: bool = False
) -> Path:
    """``corpus.csv`` (UTF-8, optionally with a byte order mark) naming one clip per row."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        path = write_clip(folder / f"{row['id'][:20]}.mp4", 6)
        writer.writerow({"path": path, "language": "de", "split": "train", "gloss": "", **row})
    annotations = folder / "corpus.csv"
    annotations.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode())
    return annotations


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    return line


def test_unicode_forms_reach_manifest_and_glosses_normalised(tmp_path):
    rows = [
        {"id": "nfc", "text": SENTENCE},
        {"id": "nfd", "text": NFD, "gloss": unicodedata.normalize("NFD", "SÜDEN WARM")},
        {
            "id": "invisible",
            "text": "morgen re\u200bgen und schnee\u00adfall\u2060 im nor\u200cden",
        },
        {"id": "bom_in_text", "text": "\ufeffwind aus west"},
        {"id": "zh_fullwidth", "text": "今天，有１２３个人　在ＡＢＣ", "language": "zh"},
        {"id": "de_fullwidth", "text": "es bleibt bei １２ grad"},
        {"id": "only_invisible", "text": "\u200b\u00ad\ufeff\u2060"},
    ]
    annotations = write_corpus(tmp_path / "corpus", rows, bom=True)
    out = tmp_path / "out"
    result = run_generic("pseudo-gloss", annotations, out)
    assert result.exit_code == 0, result.output
    text = {r["id"]: r["translation"] for r in manifest_rows(out, "train")}
    assert text["nfc"] == text["nfd"] == SENTENCE
    assert text["invisible"] == "morgen regen und schneefall im norden"
    assert text["bom_in_text"] == "wind aus west"
    # full-width digits and letters are half-width in Chinese; its punctuation stays full-width
    assert text["zh_fullwidth"] == "今天，有123个人 在ABC"
    assert text["de_fullwidth"] == "es bleibt bei １２ grad"  # German text is never NFKC'd
    gloss = {r["id"]: r["gloss"] for r in manifest_rows(out, "train")}
    assert gloss["nfd"] == "SÜDEN WARM" and gloss["nfc"] is None
    [empty] = quarantine_rows(out)
    assert (empty["id"], empty["reason"]) == ("only_invisible", m.EMPTY_TEXT)
    meta = m.read_provenance(out / "manifest" / "train.parquet")
    assert meta["text_normalisation"] == TEXT_NORMALISATION
    glosses = {
        r["id"]: r["pseudo_glosses"]
        for r in pq.read_table(out / "pseudo-gloss" / "train.parquet").to_pylist()
    }
    assert glosses["nfd"] == glosses["nfc"]
    assert all(g in glosses["nfc"] for g in GLOSSES)
    assert "regen" in glosses["invisible"] and "schneefall" in glosses["invisible"]
    assert "123" in glosses["zh_fullwidth"]


@pytest.mark.parametrize(
    "text, language, expected",
    [
        ("re\u200bgen", "de", "regen"),
        ("u\u00ad\u0308ber", "de", "über"),  # the soft hyphen had kept u from its diaeresis
        ("Auf\u200clage", "de", "Auflage"),
        ("می\u200cخواهم", "fa", "می\u200cخواهم"),  # Persian writes the non-joiner
        ("👨\u200d👩\u200d👧", "en", "👨\u200d👩\u200d👧"),  # an emoji sequence
        ("１２３", "zh-CN", "123"),
        ("２４．５％", "zh", "24.5%"),
        ("２４．５％", "de", "２４．５％"),
        ("x²", "zh", "x²"),  # NFKC would write x2
        (None, "de", None),
    ],
)
def test_normal_form(text, language, expected):
    assert normalised(text, language) == expected


def test_other_delimiters_are_read_when_the_header_says_so(tmp_path):
    rows = [{"id": "semi", "text": "wolken, regen und wind"}]
    annotations = write_corpus(tmp_path / "semicolon", rows, delimiter=";")
    result = run_generic("manifest", annotations, tmp_path / "out")
    assert result.exit_code == 0, result.output
    [row] = manifest_rows(tmp_path / "out", "train")
    assert (row["id"], row["translation"]) == ("semi", "wolken, regen und wind")
    tabs = write_corpus(tmp_path / "tabs", [{"id": "tab", "text": "sonne"}], delimiter="\t")
    assert run_generic("manifest", tabs, tmp_path / "out_tabs").exit_code == 0


def test_a_header_lacking_columns_names_the_delimiter(tmp_path):
    annotations = write_corpus(tmp_path / "c", [{"id": "a", "text": "sonne"}], delimiter=";")
    annotations.write_text(annotations.read_text().replace(";language;", ";lang;", 1))
    line = one_error_line(run_generic("manifest", annotations, tmp_path / "out"))
    assert line.endswith("corpus.csv: header (read with ';' as delimiter) lacks column(s) language")


@pytest.mark.parametrize(
    "encoding, cause",
    [
        ("utf-16", "corpus.csv is UTF-16 (byte order mark): save it as UTF-8"),
        ("utf-32", "corpus.csv is UTF-32 (byte order mark): save it as UTF-8"),
        ("utf-16-le", "corpus.csv is not UTF-8 text ("),
    ],
)
def test_a_csv_in_another_encoding_is_one_line_naming_it(tmp_path, encoding, cause):
    annotations = write_corpus(tmp_path / "c", [{"id": "a", "text": "süden"}])
    annotations.write_bytes(annotations.read_text(encoding="utf-8").encode(encoding))
    line = one_error_line(run_generic("manifest", annotations, tmp_path / "out"))
    assert cause in line and "save it as UTF-8" in line


def test_an_id_too_long_for_a_file_name_is_unsafe(tmp_path):
    long_id = "x" * 300
    rows = [
        {"id": long_id, "text": "regen"},
        {"id": "y" * MAX_ID_CHARS, "text": "sonne"},
        {"id": "good", "text": "wind"},
    ]
    annotations = write_corpus(tmp_path / "c", rows)
    out = tmp_path / "out"
    result = run_generic("manifest", annotations, out, "--max-quarantine-share", 0.5)
    assert result.exit_code == 0, result.output
    [bad] = quarantine_rows(out)
    assert (bad["id"], bad["reason"]) == (long_id, m.UNSAFE_ID)
    assert "300 characters" in bad["detail"] and f"cap of {MAX_ID_CHARS}" in bad["detail"]
    assert sorted(r["id"] for r in manifest_rows(out, "train")) == ["good", "y" * MAX_ID_CHARS]
