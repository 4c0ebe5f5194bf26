"""Part-of-speech tables: the tags our offline taggers emit, mapped to Universal POS.

German (HanTa emits STTS, with its own spellings such as ``VV(FIN)`` and ``ADJ(A)``, plus
``NNA``/``NNI``/``UNKNOWN``): the standard STTS→UD table used by spaCy's German tag map.
Auxiliaries (``VA*``) are AUX, as spaCy's German models tag them, so Sign2GPT's filter drops
them; modals (``VM*``) are VERB.

Chinese (jieba's ICTCLAS-style flags): no official table exists; this one follows the UD
Chinese treebanks: time, place and localizer words and classifiers are NOUN, abbreviations and
names PROPN, idioms and set phrases X.
"""

from __future__ import annotations

KEPT_UPOS = frozenset({"NOUN", "NUM", "ADV", "PRON", "PROPN", "ADJ", "VERB"})  # Sign2GPT

STTS_TO_UPOS = {
    "ADJA": "ADJ",
    "ADJD": "ADJ",
    "ADJ(A)": "ADJ",
    "ADJ(D)": "ADJ",
    "ADV": "ADV",
    "PAV": "ADV",
    "PROAV": "ADV",
    "PWAV": "ADV",
    "APPR": "ADP",
    "APPRART": "ADP",
    "APPO": "ADP",
    "APZR": "ADP",
    "PTKVZ": "ADP",
    "ART": "DET",
    "PDAT": "DET",
    "PIAT": "DET",
    "PIDAT": "DET",
    "PPOSAT": "DET",
    "PRELAT": "DET",
    "PWAT": "DET",
    "CARD": "NUM",
    "FM": "X",
    "TRUNC": "X",
    "XY": "X",
    "UNKNOWN": "X",
    "ITJ": "INTJ",
    "KOUI": "SCONJ",
    "KOUS": "SCONJ",
    "KON": "CCONJ",
    "KOKOM": "CCONJ",
    "NN": "NOUN",
    "NNA": "NOUN",
    "NNI": "NOUN",
    "NE": "PROPN",
    "PDS": "PRON",
    "PIS": "PRON",
    "PPER": "PRON",
    "PPOSS": "PRON",
    "PRELS": "PRON",
    "PRF": "PRON",
    "PWS": "PRON",
    "PTKA": "PART",
    "PTKANT": "PART",
    "PTKNEG": "PART",
    "PTKZU": "PART",
    "VV": "VERB",
    "VM": "VERB",
    "VA": "AUX",
    "$,": "PUNCT",
    "$.": "PUNCT",
    "$(": "PUNCT",
}

JIEBA_TO_UPOS = {
    "n": "NOUN",
    "ng": "NOUN",
    "nl": "NOUN",
    "vn": "NOUN",
    "an": "NOUN",
    "s": "NOUN",
    "t": "NOUN",
    "tg": "NOUN",
    "f": "NOUN",
    "q": "NOUN",
    "qe": "NOUN",
    "qg": "NOUN",
    "qv": "NOUN",
    "qt": "NOUN",
    "nr": "PROPN",
    "nrt": "PROPN",
    "nrfg": "PROPN",
    "ns": "PROPN",
    "nt": "PROPN",
    "nz": "PROPN",
    "j": "PROPN",
    "v": "VERB",
    "vd": "VERB",
    "vg": "VERB",
    "vi": "VERB",
    "vq": "VERB",
    "vshi": "VERB",
    "vyou": "VERB",
    "vf": "VERB",
    "vx": "VERB",
    "vl": "VERB",
    "a": "ADJ",
    "ag": "ADJ",
    "al": "ADJ",
    "b": "ADJ",
    "bg": "ADJ",
    "z": "ADJ",
    "zg": "ADJ",
    "ad": "ADV",
    "d": "ADV",
    "df": "ADV",
    "dg": "ADV",
    "m": "NUM",
    "mg": "NUM",
    "mq": "NUM",
    "r": "PRON",
    "rr": "PRON",
    "rz": "PRON",
    "rg": "PRON",
    "ry": "PRON",
    "p": "ADP",
    "c": "CCONJ",
    "cc": "CCONJ",
    "u": "PART",
    "ud": "PART",
    "ug": "PART",
    "uj": "PART",
    "ul": "PART",
    "uv": "PART",
    "uz": "PART",
    "y": "PART",
    "yg": "PART",
    "k": "PART",
    "e": "INTJ",
    "o": "INTJ",
    "h": "X",
    "i": "X",
    "l": "X",
    "in": "X",
    "ln": "X",
    "jn": "X",
    "g": "X",
    "eng": "X",
    "x": "X",
    "w": "PUNCT",
}


def stts_to_upos(tag: str) -> str:
    """Exact tag, then the part before ``(`` (``VV(FIN)`` → ``VV``), then the first two letters."""
    for key in (tag, tag.split("(")[0], tag[:2]):
        if key in STTS_TO_UPOS:
            return STTS_TO_UPOS[key]
    return "X"


# closed-class words whose UD Chinese tag is not their jieba flag's: the copulas 是 and 为 and the
# passive marker are AUX, modal verbs (会, 能, 可以, 要, 应该, ...) AUX, adverbs that link clauses
# SCONJ, demonstratives and 其他/任何/所有 DET, 等 ("and so on") NOUN, 由 ("by", heading its
# clause) VERB, 于 and 将 (object marker) ADP; localizers (jieba "f") are ADP, UD's postpositions.
# 为/于 closing a verb compound (成为, 位于) are VERB: see chinese_rules.
UD_CHINESE_WORDS = {
    "是": "AUX",
    "被": "AUX",
    "也": "SCONJ",
    "都": "SCONJ",
    "就": "SCONJ",
    "还": "SCONJ",
    "又": "SCONJ",
    "才": "SCONJ",
    "并": "SCONJ",
    "而": "SCONJ",
    "这": "DET",
    "那": "DET",
    "该": "DET",
    "各": "DET",
    "每": "DET",
    "等": "NOUN",
    "于": "ADP",
    "会": "AUX",
    "能": "AUX",
    "能够": "AUX",
    "可": "AUX",
    "可以": "AUX",
    "可能": "AUX",
    "要": "AUX",
    "应": "AUX",
    "应该": "AUX",
    "应当": "AUX",
    "必须": "AUX",
    "其他": "DET",
    "其它": "DET",
    "任何": "DET",
    "所有": "DET",
    "为": "AUX",
    "由": "VERB",
    "亦": "SCONJ",
    "将": "ADP",
    "时": "ADP",
}
LOCALIZER_FLAGS = ("f",)


def jieba_to_upos(flag: str, word: str) -> str:
    if flag == "x" and word and not any(ch.isalnum() for ch in word):
        return "SPACE" if word.isspace() else "PUNCT"
    if word in UD_CHINESE_WORDS:
        return UD_CHINESE_WORDS[word]
    if flag in LOCALIZER_FLAGS and len(word) == 1:
        return "ADP"
    return JIEBA_TO_UPOS.get(flag, JIEBA_TO_UPOS.get(flag[:1], "X"))


NUMERAL_CHARS = frozenset("0123456789０１２３４５６７８９一二三四五六七八九十百千万亿两零〇几半")


DEMONSTRATIVE_CLASSIFIER = frozenset(
    {"这个", "那个", "这种", "那种", "这位", "那位", "每个", "各个", "这次", "那次"}
)


def split_numeral_classifier(word: str, flag: str) -> list[tuple[str, str]]:
    """jieba keeps a number or demonstrative and its classifier as one word (``一个``, ``2010年``,
    ``这个``); UD Chinese has two: ``一`` (NUM) or ``这`` (DET), then ``个`` (NOUN)."""
    if word in DEMONSTRATIVE_CLASSIFIER:
        return [(word[0], "r"), (word[1], "q")]
    if flag != "m" or len(word) < 2 or word[0] not in NUMERAL_CHARS:
        return [(word, flag)]
    cut = len(word)
    while cut > 0 and word[cut - 1] not in NUMERAL_CHARS:
        cut -= 1
    if cut == 0 or cut == len(word) or any(ch not in NUMERAL_CHARS for ch in word[:cut]):
        return [(word, flag)]
    return [(word[:cut], "m"), (word[cut:], "q")]
