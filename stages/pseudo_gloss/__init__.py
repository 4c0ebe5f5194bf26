"""Stage ``pseudo-gloss`` (Sign2GPT): words of the translation kept by universal POS, German
lemmatised and lower-cased, Chinese segmented; a train-only vocabulary; fastText prototypes.

Outputs under ``<out>/pseudo-gloss/``: ``<split>.parquet`` (:data:`SCHEMA`), ``vocab.json``,
``prototypes.npy`` (float32 ``[V+1, 300]``, row 0 the blank), ``quarantine.parquet``,
``summary.json``. Ids in ``pseudo_gloss_ids`` follow ``vocab.json``; -1 marks a gloss outside
the vocabulary (unseen in train, or dropped by the frequency filter).
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.runner import Stage, WorkUnit, committed_units, slice_units
from pipeline.storage import atomic_write_bytes, atomic_write_json, write_parquet
from stages.pseudo_gloss.languages import OFFLINE_LANGUAGES, load_pipeline, pipeline_name
from stages.pseudo_gloss.prototypes import prototypes_from_corpus, prototypes_from_user_vectors
from stages.pseudo_gloss.tagsets import KEPT_UPOS
from stages.pseudo_gloss.vocabulary import build_vocabulary, oov_rate

UNSUPPORTED_LANGUAGE = "unsupported_language"
UNIT_ROWS = "rows.parquet"
UNIT_QUARANTINE = "quarantine.parquet"
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
    unit_size: int = 200
    spacy_model: str | None = None
    fasttext: str | None = None
    max_gloss_share: float | None = None
    nlp_batch_size: int = 256


def analysed(doc, language: str) -> tuple[list[str], list[str], list[str]]:
    """A parsed sentence's tokens, lemmas (German lower-cased; Chinese words as segmented) and UPOS."""
    tokens = [t for t in doc if not t.is_space]
    lemmas = [(t.text if language == "zh" else (t.lemma_ or t.text)).lower() for t in tokens]
    return [t.text for t in tokens], lemmas, [t.pos_ or "X" for t in tokens]


def pseudo_glosses_of(doc, language: str) -> list[str]:
    """Sign2GPT's pseudo-glosses of a parsed sentence: lemmas whose UPOS is kept, in spoken order."""
    _, lemmas, upos = analysed(doc, language)
    return [lemma for lemma, pos in zip(lemmas, upos) if pos in KEPT_UPOS]


class PseudoGlossStage(Stage):
    name = "pseudo-gloss"
    version = 2  # 2: UD conventions on top of HanTa and jieba (german_rules, tagsets)
    requires = ("manifest",)

    def __init__(self, options: PseudoGlossOptions, run: Any) -> None:
        super().__init__(options, run)
        share = options.max_gloss_share
        if share is not None and not 0 < share <= 1:
            raise PrepError(f"--max-gloss-share must be in (0, 1], got {share}")
        self._pipelines: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pipelines": {}}  # pipelines load lazily in each worker

    def plan(self) -> list[WorkUnit]:
        units = []
        for split in m.manifest_splits(self.layout):
            table = m.read_table(self.layout.split_table("manifest", split)).select(
                ["id", "language", "translation"]
            )
            units += slice_units(split, table.to_pylist(), self.options.unit_size)
        return units

    def run(self, unit: WorkUnit, workdir: Path) -> dict[str, int]:
        rows, rejected = [], []
        by_language: dict[str, list[dict]] = defaultdict(list)
        for item in unit.items:
            by_language[item["language"]].append(item)
        for language, items in sorted(by_language.items()):
            if language not in OFFLINE_LANGUAGES and not self.options.spacy_model:
                detail = f"no offline pipeline for language {language!r}; give --spacy-model"
                rejected += [
                    m.quarantine_row(
                        i["id"],
                        unit.split,
                        self.run_config.dataset,
                        self.name,
                        UNSUPPORTED_LANGUAGE,
                        detail,
                    )
                    for i in items
                ]
                continue
            rows += self._annotate(unit.split, language, items)
        order = {item["id"]: position for position, item in enumerate(unit.items)}
        rows.sort(
            key=lambda row: order[row["id"]]
        )  # manifest order, whatever the language grouping
        write_parquet(m.to_table(rows, SCHEMA), workdir / UNIT_ROWS)
        write_parquet(m.to_table(rejected, m.QUARANTINE_SCHEMA), workdir / UNIT_QUARANTINE)
        empty = sum(1 for r in rows if not r["pseudo_glosses"])
        return {
            "ok": len(rows),
            "quarantined": len(rejected),
            "empty": empty,
            "tokens": sum(len(r["tokens"]) for r in rows),
        }

    def _annotate(self, split: str, language: str, items: list[dict]) -> list[dict]:
        nlp = self._pipeline(language)
        docs = nlp.pipe((i["translation"] for i in items), batch_size=self.options.nlp_batch_size)
        return [self._row(split, language, item, doc) for item, doc in zip(items, docs)]

    def _pipeline(self, language: str):
        key = self.options.spacy_model or language
        if key not in self._pipelines:
            cache = self.layout.out / "_cache" / "jieba"
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

    def finalize(self, units: list[WorkUnit]) -> dict[str, Any]:
        tables: dict[str, list[dict]] = defaultdict(list)
        quarantine: list[dict] = []
        for unit, folder in committed_units(self, units):
            tables[unit.split] += m.read_table(folder / UNIT_ROWS).to_pylist()
            quarantine += m.read_table(folder / UNIT_QUARANTINE).to_pylist()
        train = tables.get("train", [])
        vocabulary = build_vocabulary(
            ((r["translation"], r["pseudo_glosses"]) for r in train), self.options.max_gloss_share
        )
        prototypes = self._prototypes(train, vocabulary.glosses)
        meta = self._provenance(vocabulary, prototypes.source)
        splits = {}
        for split in sorted(tables, key=m.split_order):
            rows = tables[split]
            for row in rows:
                row["pseudo_gloss_ids"] = vocabulary.encode(row["pseudo_glosses"])
            write_parquet(m.to_table(rows, SCHEMA, meta), self.layout.split_table(self.name, split))
            reasons = Counter(q["reason"] for q in quarantine if q["split"] == split)
            splits[split] = {
                "samples": len(rows),
                "quarantined": dict(sorted(reasons.items())),
                "empty_sequences": sum(1 for r in rows if not r["pseudo_glosses"]),
                "oov_rate": oov_rate(vocabulary, (r["pseudo_glosses"] for r in rows)),
            }
        write_parquet(
            m.to_table(quarantine, m.QUARANTINE_SCHEMA, meta),
            self.layout.quarantine_table(self.name),
        )
        atomic_write_json(
            self.layout.stage_dir(self.name) / "vocab.json",
            {"provenance": meta, "glosses": vocabulary.rows()},
        )
        buffer = io.BytesIO()
        np.save(buffer, prototypes.matrix)
        atomic_write_bytes(self.layout.stage_dir(self.name) / "prototypes.npy", buffer.getvalue())
        return {
            "splits": splits,
            "outputs": str(self.layout.stage_dir(self.name)),
            "vocabulary_size": len(vocabulary.glosses),
            "dropped_by_frequency": list(vocabulary.dropped),
            "prototypes": {
                "shape": list(prototypes.matrix.shape),
                "source": prototypes.source,
                "missing_vectors": prototypes.missing,
            },
        }

    def _prototypes(self, train: list[dict], glosses: tuple[str, ...]):
        if self.options.fasttext:
            return prototypes_from_user_vectors(Path(self.options.fasttext), glosses)
        return prototypes_from_corpus([r["lemmas"] for r in train], glosses)

    def _provenance(self, vocabulary, prototype_source: str) -> dict[str, Any]:
        meta = m.provenance(self.name, self.version, self.options_dict())
        meta.update(
            {
                "dataset": self.run_config.dataset,
                "pipelines": {
                    lang: pipeline_name(lang, self.options.spacy_model)
                    for lang in OFFLINE_LANGUAGES
                },
                "kept_upos": sorted(KEPT_UPOS),
                "max_gloss_share": self.options.max_gloss_share,
                "train_unique_sentences": vocabulary.unique_sentences,
                "prototype_source": prototype_source,
            }
        )
        return meta
