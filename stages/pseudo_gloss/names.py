"""The languages with an offline pipeline and the names recorded for each pipeline, without
importing spaCy: the stage registers (and ``prep --help`` runs) before any pipeline is built."""

from __future__ import annotations

OFFLINE_LANGUAGES = ("de", "zh")


def pipeline_name(language: str, spacy_model: str | None) -> str:
    if spacy_model:
        return f"spacy:{spacy_model}"
    return {
        "de": "spacy.blank(de)+hanta+ud-rules-1",
        "zh": "spacy.blank(zh)+jieba.posseg+ud-rules-1",
    }.get(language, "none")
