"""Word boundaries and tags the UD Chinese treebanks (GSD, GSDSimp) use where the segmenter's
dictionary words are longer or its tags differ, each rule measured on the UD Chinese GSDSimp
dev set with ``bench/pseudo_gloss_quality.py``.

UD Chinese segments finer than the dictionaries (UD_Chinese-GSD's guidelines, "Tokenization"
and "PART"): a verb and the coverb that completes it are two words (``成为`` -> ``成 为``,
``位于`` -> ``位 于``, both VERB); a number or demonstrative and its classifier are two words
(``一个`` -> ``一 个``); nominal suffixes of a derived word are words of their own tagged PART
(``北京市`` -> ``北京 市``, ``研究者`` -> ``研究 者``).
"""

from __future__ import annotations

from collections.abc import Callable

from stages.pseudo_gloss.tagsets import NUMERAL_CHARS, jieba_to_upos, split_numeral_classifier

# coverbs that close a verb compound (UD: "mark", VERB); the compounds below are single lexical
# words in UD Chinese (认为 "think", 行为 "behaviour") or conjunctions, so they stay whole
COVERBS = frozenset("为于")
LEXICAL_COVERB_WORDS = frozenset(
    {"认为", "以为", "行为", "因为", "等于", "至于", "关于", "对于", "由于"}
)
# derivational suffixes UD Chinese tags PART: people and agents, places and administrative
# units, institutions, languages, abstract nouns
SUFFIXES = frozenset("人者员家们市省县州区乡镇国军队站会语性化线")
SUFFIX_PART_FLAG = "k"  # jieba's flag for a suffix
# prefixes UD Chinese tags PART: rank and former holder of an office (总经理, 副主席, 原主任)
PREFIXES = frozenset("总副原")
MAGNITUDES = frozenset({"十", "百", "千", "万", "亿", "万亿"})
ORDINAL = "第"
NUMBER_MARKS = frozenset(".,")
# quantity words UD Chinese keeps whole although they begin with a numeral
UNSPLIT_NUMERALS = frozenset({"一些", "一切", "一样", "一般", "一定", "一起", "一直"})
# 来 between a means and a verb links them (用 X 来 Y), UD SCONJ
LINKING_VERBS = frozenset({"来"})
# an adverb fused with the copula is one word in UD Chinese, the copula's tag AUX (也是, 就是)
COPULA = "是"
COPULA_ADVERBS = frozenset("也都就还又才并而不只正即便乃则亦总")
# "one of" is the particle 之 and the numeral 一 in UD Chinese
FIXED_SPLITS = {"之一": (("之", "u", "PART"), ("一", "m", "NUM"))}
# a suffix written apart from the name it derives from (美国 人, 北京 站) is still a suffix
PROPER_FLAGS = ("nr", "ns", "nt", "nz")
# demonstratives are DET before what they point at and PRON standing alone (这是 ...)
DEMONSTRATIVES = frozenset("这那此")
NOMINAL_UPOS = frozenset({"NOUN", "PROPN", "NUM", "ADJ"})


def ud_words(
    pairs: list[tuple[str, str]], known: Callable[[str], bool]
) -> list[tuple[str, str, str]]:
    """jieba's ``(word, flag)`` pairs as UD Chinese words: ``(word, flag, upos)``.

    ``known`` says whether a string is a word of the segmenter's dictionary (a suffix is split
    off only when what stays is a word itself)."""
    words: list[tuple[str, str, str]] = []
    for word, flag in _whole_numbers(pairs):
        if word in UNSPLIT_NUMERALS:
            words.append((word, flag, jieba_to_upos(flag, word)))
            continue
        for part, part_flag in split_numeral_classifier(word, flag):
            words += _split_derivation(part, part_flag, known)
    return _in_context(words)


def _whole_numbers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A number is one word in UD Chinese: digits with their decimal point or thousands
    separators (``24.44``, ``16,250``), with their order of magnitude (``20万``), and an ordinal
    with its prefix (``第18``), all of which the segmenter cuts apart."""
    out: list[tuple[str, str]] = []
    for i, (word, flag) in enumerate(pairs):
        last = out[-1][0] if out else ""
        if last.isdigit() and word in NUMBER_MARKS and i + 1 < len(pairs):
            following = pairs[i + 1][0]
            if following.isdigit() and (word == "." or len(following) == 3):
                out[-1] = (last + word, "m")
                continue
        if last and last[-1] in NUMBER_MARKS and word.isdigit():
            out[-1] = (last + word, "m")
            continue
        if out and out[-1][1] == "m" and flag == "m":
            if (last[-1].isdigit() and word in MAGNITUDES) or (
                last == ORDINAL and word[0] in NUMERAL_CHARS
            ):
                out[-1] = (last + word, "m")
                continue
        out.append((word, flag))
    return out


def _in_context(words: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Tags that depend on the neighbours: suffixes after names, 来, demonstratives."""
    out = list(words)
    for i, (word, flag, upos) in enumerate(out):
        before = out[i - 1][1] if i else ""
        after = out[i + 1][2] if i + 1 < len(out) else ""
        if len(word) == 1 and word in SUFFIXES and before.startswith(PROPER_FLAGS):
            out[i] = (word, SUFFIX_PART_FLAG, "PART")
        elif word in LINKING_VERBS and upos == "VERB" and after == "VERB":
            out[i] = (word, "c", "SCONJ")
        elif word in DEMONSTRATIVES and upos == "DET" and after not in NOMINAL_UPOS:
            out[i] = (word, flag, "PRON")
    return out


def _split_derivation(
    word: str, flag: str, known: Callable[[str], bool]
) -> list[tuple[str, str, str]]:
    if (
        len(word) == 2
        and word[1] in COVERBS
        and flag.startswith("v")
        and word not in LEXICAL_COVERB_WORDS
    ):
        return [(word[0], "v", "VERB"), (word[1], "v", "VERB")]
    if word in FIXED_SPLITS:
        return list(FIXED_SPLITS[word])
    if len(word) == 2 and word[1] == COPULA and word[0] in COPULA_ADVERBS:
        return [(word, flag, "AUX")]
    if len(word) >= 3 and word[0] in PREFIXES and known(word[1:]):
        return [(word[0], "h", "PART"), *_split_derivation(word[1:], flag, known)]
    if len(word) >= 3 and word[-1] in SUFFIXES and known(word[:-1]):
        stem = word[:-1]
        return [(stem, flag, jieba_to_upos(flag, stem)), (word[-1], SUFFIX_PART_FLAG, "PART")]
    return [(word, flag, jieba_to_upos(flag, word))]
