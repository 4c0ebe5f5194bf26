"""spaCy pipelines per language: a user's installed pipeline, or the offline defaults
(blank German + a HanTa tagger/lemmatizer component; blank Chinese + a jieba POS tokenizer)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from pipeline.errors import PrepError
from stages.pseudo_gloss.german_rules import corrected
from stages.pseudo_gloss.names import OFFLINE_LANGUAGES, pipeline_name  # noqa: F401 (re-exported)
from stages.pseudo_gloss.tagsets import jieba_to_upos, split_numeral_classifier, stts_to_upos

HANTA_MODEL = "morphmodel_ger.pgz"  # ships inside the HanTa package
WORD_CACHE = 1 << 17  # distinct (word, tag) analyses kept per process


@Language.factory("prep_hanta_de", default_config={"casesensitive": False})
def make_hanta_component(nlp: Language, name: str, casesensitive: bool) -> "HanTaComponent":
    return HanTaComponent(casesensitive)


class HanTaComponent:
    """Sets ``tag_`` (STTS), ``pos_`` (UPOS) and ``lemma_`` from the Hanover Tagger.

    Phoenix14T text is lower-case; HanTa tags it best with ``casesensitive=False`` (nouns such as
    ``nacht``/``regen`` come out as NN rather than ADV/ADJ).
    """

    def __init__(self, casesensitive: bool = False) -> None:
        from HanTa import HanoverTagger

        self.tagger = HanoverTagger.HanoverTagger(HANTA_MODEL)
        self.casesensitive = casesensitive
        # Word analysis and lemmatisation are pure functions of (word, tag) and dominate the time;
        # a corpus repeats its words, so memoising them gives identical output ~2.3x faster
        # (measured on the 519 unique Phoenix14T dev sentences).
        self.tagger.analyze_forward = functools.lru_cache(maxsize=WORD_CACHE)(
            self.tagger.analyze_forward
        )
        self.tagger._analyze = functools.lru_cache(maxsize=WORD_CACHE)(self.tagger._analyze)

    def __call__(self, doc: Doc) -> Doc:
        words = [token.text for token in doc]
        if not words:
            return doc
        tagged = corrected(
            words, self.tagger.tag_sent(words, taglevel=1, casesensitive=self.casesensitive)
        )
        for token, (_word, lemma, tag) in zip(doc, tagged):
            token.tag_, token.pos_, token.lemma_ = tag, stts_to_upos(tag), lemma
        return doc


class JiebaPosTokenizer:
    """Segments with ``jieba.posseg`` (one pass gives words and tags that agree) into a spaCy Doc."""

    def __init__(self, vocab, cache_dir: Path | None) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tokenizer.tmp_dir = str(cache_dir)  # jieba caches its prefix dict; keep it under --out
        self.segmenter = jieba.posseg.POSTokenizer(tokenizer)
        self.vocab = vocab

    def __call__(self, text: str) -> Doc:
        pairs = [
            part
            for w, f in self.segmenter.cut(text, HMM=True)
            if w.strip()
            for part in split_numeral_classifier(w, f)
        ]
        words = [w for w, _ in pairs]
        return Doc(
            self.vocab,
            words=words,
            spaces=[False] * len(words),
            tags=[f for _, f in pairs],
            pos=[jieba_to_upos(f, w) for w, f in pairs],
        )


def load_pipeline(language: str, spacy_model: str | None, cache_dir: Path | None) -> Language:
    """The user's pipeline when given (name or path), else the offline default for ``language``."""
    if spacy_model:
        try:
            return spacy.load(spacy_model)
        except OSError as exc:
            raise PrepError(
                f"spaCy pipeline {spacy_model!r} is not installed or not a pipeline folder; "
                "install it (e.g. pip install de_core_news_lg-*.whl) or drop --spacy-model for the offline default"
            ) from exc
    if language == "de":
        nlp = spacy.blank("de")
        nlp.add_pipe("prep_hanta_de")
        return nlp
    if language == "zh":
        nlp = spacy.blank("zh")
        nlp.tokenizer = JiebaPosTokenizer(nlp.vocab, cache_dir)
        return nlp
    raise ValueError(f"no offline pipeline for language {language!r}")
