"""Stage ``pseudo-gloss`` (Sign2GPT): words of the translation kept by universal POS, German
lemmatised and lower-cased, Chinese segmented; a vocabulary (train only by default); fastText prototypes.

Outputs under ``<out>/pseudo-gloss/``: ``<split>.parquet`` (:data:`SCHEMA`), ``vocab.json``,
``prototypes.npy`` (float32 ``[V+1, 300]``, row 0 the blank), ``quarantine.parquet``,
``summary.json``. Ids in ``pseudo_gloss_ids`` follow ``vocab.json``; -1 marks a gloss outside
the vocabulary (unseen in its splits, or dropped by the frequency filter).
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import manifest as m
from pipeline.stage import Export, Planned, WorkUnit, hook, option, slice_units
from pipeline.storage import atomic_write_bytes, atomic_write_json
from pipeline.table_stage import (
    MergedTables,
    MergeResult,
    TableStage,
    UnitTables,
    quarantine_row,
)
from stages.pseudo_gloss.names import OFFLINE_LANGUAGES, pipeline_name
from stages.pseudo_gloss.prototypes import prototypes_from_corpus, prototypes_from_user_vectors
from stages.pseudo_gloss.tagsets import KEPT_UPOS
from stages.pseudo_gloss.vocabulary import (
    PROTOTYPES_FILE,
    SHARE_BY,
    VOCAB_FILE,
    build_vocabulary,
    oov_rate,
)

UNSUPPORTED_LANGUAGE = "unsupported_language"
VOCABULARY_SPLITS = ("train", "all")
STRINGS = pa.list_(pa.string())
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("language", pa.string()),
        ("translation", pa.string()),
        ("tokens", STRINGS),
        ("lemmas", STRINGS),
        ("upos", STRINGS),
        ("pseudo_glosses", STRINGS),
        ("pseudo_gloss_ids", pa.list_(pa.int32())),
    ]
)


@dataclass(frozen=True)
class PseudoGlossOptions:
    unit_size: int = option(200, "Samples per work unit.", min=1)
    spacy_model: str | None = option(
        None,
        "Installed spaCy pipeline (name or folder) to use instead of the offline HanTa/jieba defaults.",
    )
    fasttext: str | None = option(
        None,
        "fastText vectors (.bin or .vec) for the prototypes (default: train skipgram vectors on the corpus).",
    )
    max_gloss_share: float | None = option(
        None,
        "Drop pseudo-glosses whose share (see --gloss-share-by) reaches this (Sign2GPT: 0.4; default: off).",
        max=1.0,
    )
    gloss_share_by: str = option(
        "sentences",
        "How --max-gloss-share counts: sentences (share of unique sentences containing the gloss) "
        "or occurrences (Sign2GPT: all occurrences over unique sentences).",
        choices=SHARE_BY,
    )
    vocabulary_splits: str = option(
        "train",
        "Splits the vocabulary and its filter count: train, or all (Sign2GPT: train, dev and test).",
        choices=VOCABULARY_SPLITS,
    )
    nlp_batch_size: int = option(256, "Sentences per nlp.pipe batch.", min=1)

    def __post_init__(self) -> None:
        share = self.max_gloss_share
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"--max-gloss-share must be in (0, 1], got {share}")


def analysed(doc, language: str) -> tuple[list[str], list[str], list[str]]:
    """A parsed sentence's tokens, lemmas (German lower-cased; Chinese words as segmented) and UPOS."""
    tokens = [t for t in doc if not t.is_space]
    lemmas = [(t.text if language == "zh" else (t.lemma_ or t.text)).lower() for t in tokens]
    return [t.text for t in tokens], lemmas, [t.pos_ or "X" for t in tokens]


def pseudo_glosses_of(doc, language: str) -> list[str]:
    """Sign2GPT's pseudo-glosses of a parsed sentence: lemmas whose UPOS is kept, in spoken order."""
    _, lemmas, upos = analysed(doc, language)
    return [lemma for lemma, pos in zip(lemmas, upos) if pos in KEPT_UPOS]


class PseudoGlossStage(TableStage):
    """Sign2GPT's pseudo-glosses of every translation, a train vocabulary and prototypes."""

    name = "pseudo-gloss"
    version = 5  # 5: ud-rules-5; 4: ud-rules-4; 3: treebank quality, Sign2GPT's gloss filter; 2: UD conventions
    options_class = PseudoGlossOptions
    schema = SCHEMA
    requires = ("manifest",)
    exports = Export(("pseudo_glosses", "pseudo_gloss_ids"))
    position = 20
    cost_unit = "clip"
    libraries = ("spacy", "HanTa", "jieba", "jiagu", "fasttext")
    summary_highlights = ("vocabulary_size", "prototypes")

    def __init__(self, options: PseudoGlossOptions, run: Any) -> None:
        super().__init__(options, run)
        self._pipelines: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pipelines": {}}  # pipelines load lazily in each worker

    def plan(self) -> Planned:
        units = []
        for split in m.manifest_splits(self.layout):
            table = m.read_table(m.manifest_table(self.layout, split)).select(
                ["id", "language", "translation"]
            )
            units += slice_units(split, table.to_pylist(), self.options.unit_size)
        return Planned(units)

    def process(self, unit: WorkUnit, context: None) -> UnitTables:
        rows, rejected = [], []
        by_language: dict[str, list[dict]] = defaultdict(list)
        for item in unit.items:
            by_language[item["language"]].append(item)
        for language, items in sorted(by_language.items()):
            if language not in OFFLINE_LANGUAGES and not self.options.spacy_model:
                detail = f"no offline pipeline for language {language!r}; give --spacy-model"
                rejected += [
                    quarantine_row(self, unit, i, UNSUPPORTED_LANGUAGE, detail) for i in items
                ]
                continue
            rows += self._annotate(unit.split, language, items)
        order = {item["id"]: position for position, item in enumerate(unit.items)}
        rows.sort(key=lambda row: order[row["id"]])  # manifest order, whatever the language
        empty = sum(1 for r in rows if not r["pseudo_glosses"])
        tokens = sum(len(r["tokens"]) for r in rows)
        return UnitTables(rows, rejected, {"empty": empty, "tokens": tokens})

    def _annotate(self, split: str, language: str, items: list[dict]) -> list[dict]:
        nlp = self._pipeline(language)
        docs = nlp.pipe((i["translation"] for i in items), batch_size=self.options.nlp_batch_size)
        return [self._row(split, language, item, doc) for item, doc in zip(items, docs)]

    def _pipeline(self, language: str):
        key = self.options.spacy_model or language
        if key not in self._pipelines:
            from stages.pseudo_gloss.languages import load_pipeline  # spaCy loads on first use

            cache = self.layout.cache_dir("jieba")
            self._pipelines[key] = load_pipeline(language, self.options.spacy_model, cache)
        return self._pipelines[key]

    @staticmethod
    def _row(split: str, language: str, item: dict, doc) -> dict:
        tokens, lemmas, upos = analysed(doc, language)
        return {
            "id": item["id"],
            "split": split,
            "language": language,
            "translation": item["translation"],
            "tokens": tokens,
            "lemmas": lemmas,
            "upos": upos,
            "pseudo_glosses": [lemma for lemma, pos in zip(lemmas, upos) if pos in KEPT_UPOS],
        }

    def merge(self, merged: MergedTables, context: None) -> MergeResult:
        """The vocabulary (ids into every split's rows), vocab.json and prototypes.npy."""
        splits = merged.splits if self.options.vocabulary_splits == "all" else ["train"]
        source = [row for split in splits for row in merged.rows.get(split, [])]
        vocabulary = build_vocabulary(
            ((r["translation"], r["pseudo_glosses"]) for r in source),
            self.options.max_gloss_share,
            self.options.gloss_share_by,
        )
        prototypes = self._prototypes(source, vocabulary.glosses)
        meta = self._provenance(vocabulary, prototypes.source, splits)
        figures = {}
        for split in merged.splits:
            rows = merged.rows[split]
            for row in rows:
                row["pseudo_gloss_ids"] = vocabulary.encode(row["pseudo_glosses"])
            figures[split] = {
                "empty_sequences": sum(1 for r in rows if not r["pseudo_glosses"]),
                "oov_rate": oov_rate(vocabulary, (r["pseudo_glosses"] for r in rows)),
            }
        atomic_write_json(
            self.layout.stage_file(self.name, VOCAB_FILE),
            {"provenance": meta, "glosses": vocabulary.rows()},
        )
        buffer = io.BytesIO()
        np.save(buffer, prototypes.matrix)
        atomic_write_bytes(self.layout.stage_file(self.name, PROTOTYPES_FILE), buffer.getvalue())
        summary = {
            "vocabulary_size": len(vocabulary.glosses),
            "dropped_by_frequency": list(vocabulary.dropped),
            "prototypes": {
                "shape": list(prototypes.matrix.shape),
                "source": prototypes.source,
                "missing_vectors": prototypes.missing,
            },
        }
        return MergeResult(meta, figures, summary)

    def _prototypes(self, rows: list[dict], glosses: tuple[str, ...]):
        if self.options.fasttext:
            return prototypes_from_user_vectors(Path(self.options.fasttext), glosses)
        return prototypes_from_corpus([r["lemmas"] for r in rows], glosses)

    def _provenance(self, vocabulary, prototype_source: str, splits: list[str]) -> dict[str, Any]:
        meta = self.provenance()
        meta.update(
            {
                "pipelines": {
                    lang: pipeline_name(lang, self.options.spacy_model)
                    for lang in OFFLINE_LANGUAGES
                },
                "kept_upos": sorted(KEPT_UPOS),
                "max_gloss_share": self.options.max_gloss_share,
                "gloss_share_by": self.options.gloss_share_by,
                "vocabulary_splits": list(splits),
                "unique_sentences": vocabulary.unique_sentences,
                "prototype_source": prototype_source,
            }
        )
        return meta

    doctor_checks = hook("stages.pseudo_gloss.checks:doctor_checks")
    report_sections = hook("stages.pseudo_gloss.report:report_sections")
