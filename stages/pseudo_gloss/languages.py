"""spaCy pipelines per language: a user's installed pipeline, or the offline defaults
(blank German + a HanTa tagger/lemmatizer component; blank Chinese + a jieba POS tokenizer)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import spacy
from spacy.language import Language
from spacy.symbols import ORTH
from spacy.tokens import Doc

from pipeline.errors import PrepError
from stages.pseudo_gloss.chinese_dictionary import jiagu_dictionary, prefix_frequencies
from stages.pseudo_gloss.chinese_rules import ud_words
from stages.pseudo_gloss.german_rules import corrected
from stages.pseudo_gloss.names import OFFLINE_LANGUAGES, pipeline_name  # noqa: F401 (re-exported)
from stages.pseudo_gloss.tagsets import NUMERAL_CHARS, stts_to_upos

HANTA_MODEL = "morphmodel_ger.pgz"  # ships inside the HanTa package
WORD_CACHE = 1 << 17  # distinct (word, tag) analyses kept per process
PARTICIPLE_TAG = "VV(PP)"
NOUN_TAG = "NN"
UNKNOWN_TAG = "UNKNOWN"  # HanTa's tag for a morpheme it cannot place at all
# letters written out where the keyboard or Swiss spelling lacks them
TRANSLITERATIONS = {"ss": "ß", "ue": "ü", "oe": "ö", "ae": "ä"}
# derivational suffixes whose nouns inflect regularly (-ung|en, -heit|en, -ling|e, ...)
NOUN_SUFFIXES = ("ung", "heit", "keit", "schaft", "ion", "tät", "ling", "nis", "ismus", "tum")
MIN_HEAD = 3  # the shortest known noun taken as a compound's head
# how far (natural log) below HanTa's best reading a participle reading may lie and still count:
# "begeistert" (ADJ(D) -11.1, VV(PP) -12.3) is a participle; "verschieden" (4.5 below) is not
# "verscheiden"'s. Every participle UD German GSD dev lemmatises to a verb lies within 2.2.
PARTICIPLE_MARGIN = 3.0


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
        self.participle_lemma = functools.lru_cache(maxsize=WORD_CACHE)(self._participle_lemma)
        self.guessed_noun = functools.lru_cache(maxsize=WORD_CACHE)(self._guessed_noun)
        self.spelling = functools.lru_cache(maxsize=WORD_CACHE)(self._spelling)
        self.noun_reading = functools.lru_cache(maxsize=WORD_CACHE)(self._noun_reading)
        noun_tag = self.tagger.tag2int[NOUN_TAG]
        self.known_noun_stems = self.tagger.LP_m_t[noun_tag]

    def noun_lemma(self, noun: str) -> str:
        """HanTa's lemma of a capitalised word read as a noun."""
        return self.tagger.analyze(noun, taglevel=1)[0]

    def _unknown_morphemes(self, word: str) -> bool:
        """Whether HanTa's best analysis of ``word`` rests on a morpheme outside its lexicon."""
        _lemma, morphemes, _tag = self.tagger.analyze(word, taglevel=3, casesensitive=False)
        for morpheme, tag in morphemes:
            known = self.tagger.LP_m_t.get(self.tagger.tag2int.get(tag))
            if tag == UNKNOWN_TAG or (known is not None and morpheme not in known):
                return True
        return False

    def _spelling(self, word: str) -> str:
        """``word`` in the spelling HanTa's lexicon has, when only that one is in it: ``ss`` as
        ``ß`` (``spass`` -> ``spaß``, ``aussenbereich`` -> ``außenbereich``; HanTa already does
        this for the words it knows, ``ausschuss`` -> ``ausschuß``) and ``ae``/``oe``/``ue`` as
        umlauts (``fuer`` -> ``für``), as Swiss and keyboard-limited text writes them."""
        if not any(plain in word for plain in TRANSLITERATIONS) or not self._unknown_morphemes(
            word
        ):
            return word
        for plain, letter in TRANSLITERATIONS.items():
            for at in range(len(word) - len(plain), -1, -1):
                if word[at : at + len(plain)] == plain:
                    variant = word[:at] + letter + word[at + len(plain) :]
                    if not self._unknown_morphemes(variant):
                        return variant
        return word

    def _guessed_noun(self, word: str) -> bool:
        """Whether HanTa's noun analysis of ``word`` cut an ending from a stem it has never seen
        and nothing makes that cut likely: no known noun ends the stem (``azorenhoch|s``), no
        derivational suffix does (``schneeverwehung|en``), and it is not the ``-n`` plural of a
        noun in ``-e`` (``böe|n``)."""
        _lemma, morphemes, _tag = self.tagger.analyze(
            word, NOUN_TAG, taglevel=3, casesensitive=False
        )
        stems = [m for m, tag in morphemes if tag == NOUN_TAG]
        if len(stems) != 1 or stems[0] in self.known_noun_stems or stems[0] == word:
            return False
        stem, ending = stems[0], word[len(stems[0]) :]
        if stem.endswith(NOUN_SUFFIXES) or (stem.endswith("e") and ending == "n"):
            return False
        return not any(
            stem[i:] in self.known_noun_stems for i in range(1, len(stem) - MIN_HEAD + 1)
        )

    def _noun_reading(self, word: str) -> str | None:
        """HanTa's noun lemma of ``word`` when it reads the capitalised form as a noun at all:
        lower case hides nouns it knows only capitalised ("hochlagen" a verb, "Hochlagen" the
        plural of "Hochlage")."""
        noun = word.capitalize()
        if not any(tag == NOUN_TAG for tag, _ in self.tagger.tag_word(noun, casesensitive=True)):
            return None
        return self.noun_lemma(noun)

    def _participle_lemma(self, word: str) -> str | None:
        """The verb HanTa reads ``word`` as the past participle of, if that is one of its readings."""
        readings = dict(self.tagger.tag_word(word, cutoff=PARTICIPLE_MARGIN, casesensitive=False))
        best = max(readings.values(), default=0.0)
        if readings.get(PARTICIPLE_TAG, best - PARTICIPLE_MARGIN - 1) < best - PARTICIPLE_MARGIN:
            return None
        lemma, tag = self.tagger.analyze(word, PARTICIPLE_TAG, casesensitive=False)
        return lemma.lower() if tag == PARTICIPLE_TAG and lemma.lower() != word else None

    def __call__(self, doc: Doc) -> Doc:
        words = [self.spelling(token.text) for token in doc]
        if not words:
            return doc
        tagged = corrected(
            words,
            self.tagger.tag_sent(words, taglevel=1, casesensitive=self.casesensitive),
            self.noun_lemma,
            self.participle_lemma,
            self.guessed_noun,
            self.noun_reading,
        )
        for token, (_word, lemma, tag) in zip(doc, tagged):
            token.tag_, token.pos_, token.lemma_ = tag, stts_to_upos(tag), lemma
        return doc


class JiebaPosTokenizer:
    """Segments with jieba's max-probability route over Jiagu's dictionary (closer to UD Chinese
    words than jieba's own, see :mod:`stages.pseudo_gloss.chinese_dictionary`), tags each word
    with jieba's dictionary tag, and applies UD Chinese conventions, into a spaCy Doc."""

    def __init__(self, vocab, cache_dir: Path | None) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)
        tagger = jieba.Tokenizer()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tagger.tmp_dir = str(cache_dir)  # jieba caches its prefix dict; keep it under --out
        self.tagger = jieba.posseg.POSTokenizer(tagger)
        self.tagger.tokenizer.check_initialized()
        self.tags = self.tagger.word_tag_tab
        self.segmenter = jieba.Tokenizer()
        self.segmenter.FREQ, self.segmenter.total = prefix_frequencies(jiagu_dictionary())
        self.segmenter.initialized = True
        self.flag = functools.lru_cache(maxsize=WORD_CACHE)(self._flag)
        self.vocab = vocab

    def known(self, word: str) -> bool:
        """Whether ``word`` is a word of the segmenter's dictionary."""
        return bool(self.segmenter.FREQ.get(word))

    def _flag(self, word: str) -> str:
        """jieba's tag of a word: its dictionary's, else numbers ``m``, Latin ``eng``, else the
        tag jieba gives the word's last part (Chinese compounds are head-final)."""
        if word in self.tags:
            return self.tags[word]
        if all(ch in NUMERAL_CHARS for ch in word):
            return "m"
        if word.isascii() and word.isalnum():
            return "eng"
        parts = list(self.tagger.cut(word, HMM=True))
        return parts[-1].flag if parts else "x"

    def __call__(self, text: str) -> Doc:
        pairs = [(w, self.flag(w)) for w in self.segmenter.cut(text, HMM=False) if w.strip()]
        words = ud_words(pairs, self.known)
        return Doc(
            self.vocab,
            words=[w for w, _, _ in words],
            spaces=[False] * len(words),
            tags=[f for _, f, _ in words],
            pos=[u for _, _, u in words],
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
        _lower_case_abbreviations(nlp)
        nlp.add_pipe("prep_hanta_de")
        return nlp
    if language == "zh":
        nlp = spacy.blank("zh")
        nlp.tokenizer = JiebaPosTokenizer(nlp.vocab, cache_dir)
        return nlp
    raise ValueError(f"no offline pipeline for language {language!r}")


def _lower_case_abbreviations(nlp: Language) -> None:
    """spaCy's German tokenizer keeps ``Dr.`` and ``St.`` whole but cuts their lower-case forms,
    which is how Phoenix-style (lower-cased) text writes them; keep those whole too."""
    for orth in sorted(nlp.tokenizer.rules):
        lower = orth.lower()
        if orth.endswith(".") and lower != orth and lower not in nlp.tokenizer.rules:
            nlp.tokenizer.add_special_case(lower, [{ORTH: lower}])
