"""The languages with an offline pipeline and the names recorded for each pipeline, without
importing spaCy: the stage registers (and ``prep --help`` runs) before any pipeline is built.

A name carries the versions of the libraries whose data decides the output (HanTa's model,
jieba's tags, Jiagu's dictionary) and of prep's own rules (``ud-rules-N``), so provenance
tells two pipelines of different quality apart."""

from __future__ import annotations

from importlib import metadata

OFFLINE_LANGUAGES = ("de", "zh")
RULES = "ud-rules-5"  # german_rules, chinese_rules, tagsets as measured in bench/pseudo_gloss_quality.py


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def pipeline_name(language: str, spacy_model: str | None) -> str:
    if spacy_model:
        return f"spacy:{spacy_model}"
    if language == "de":
        return f"spacy.blank(de)+hanta-{_version('HanTa')}+{RULES}"
    if language == "zh":
        return (
            f"spacy.blank(zh)+jieba-{_version('jieba')}-route"
            f"+jiagu-{_version('jiagu')}-dict+{RULES}"
        )
    return "none"
