"""Corrections HanTa's analyses need on lower-cased, unpunctuated German (Phoenix14T's text),
each measured on the UD German GSD dev set with ``bench/pseudo_gloss_quality.py``.

HanTa lemmatises object pronouns to the reflexive (``uns`` -> ``sich``) or leaves them as
written (``mir``), tags a lower-cased relative or demonstrative ``der`` as an article,
quantifiers such as ``alle`` or ``andere`` as pronouns or adjectives where UD German has
determiners, and separable verb particles all alike; on words it does not know it cuts endings
that are part of the word (``schauern`` -> ``schau``, ``thomann`` -> ``thoman``) and reads
lower-case words by their ending (``frostfrei`` a noun, ``breiten`` before ``sich`` an
adjective). The rules look at the word and the tag of the next word only (the input has no
commas to find a clause by).
"""

from __future__ import annotations

from collections.abc import Callable

# a personal pronoun's nominative, as UD and spaCy's German lemmatisers give it
PRONOUN_LEMMAS = {
    "mir": "ich",
    "mich": "ich",
    "dir": "du",
    "dich": "du",
    "uns": "wir",
    "euch": "ihr",
    "ihm": "er",
    "ihn": "er",
    "ihnen": "sie",
}
PERSONAL_TAGS = ("PPER", "PRF")
ARTICLE_FORMS = frozenset({"der", "die", "das", "dem", "den", "des", "dessen", "deren", "denen"})
NOMINAL_TAGS = ("NN", "NE", "ADJA", "ADJ(A)", "CARD", "PIAT", "PIDAT", "PPOSAT", "ART", "TRUNC")
SUBJECT_TAGS = ("PPER", "PIS", "PDS")
# quantifiers UD German tags DET whether or not a noun follows ("alle kommen", "andere tage")
QUANTIFIER_LEMMAS = frozenset(
    {
        "alle",
        "all",
        "ander",
        "anderer",
        "ein",
        "einer",
        "einige",
        "einiger",
        "viel",
        "viele",
        "jeder",
        "jede",
        "kein",
        "keiner",
        "beide",
        "wenig",
        "wenige",
        "mehrere",
        "manch",
        "mancher",
        "solch",
        "solcher",
        "sämtlich",
    }
)
QUANTIFIER_TAGS = ("PIS", "PIAT", "PIDAT", "ADJA", "ADJ(A)")
# a separable verb particle is ADP in UD German GSD when it has a preposition's form ("kommt
# ... an"), else ADV ("fährt ... fort", "stellt ... fest"); either way its lemma is the word
PREPOSITION_PARTICLES = frozenset(
    {
        "ab",
        "an",
        "auf",
        "aus",
        "bei",
        "durch",
        "gegen",
        "hinter",
        "mit",
        "nach",
        "statt",
        "über",
        "um",
        "vor",
        "wider",
        "zu",
        "zwischen",
    }
)
PARTICLE_TAG = "PTKVZ"
# "zu" before an adjective ("zu groß") is a degree adverb in UD German (HanTa: PTKA)
DEGREE_TAG = "PTKA"
NAME_TAG = "NE"
NOMINALISED_ADJECTIVE_TAG = "NNA"
REFLEXIVE_TAG = "PRF"
NOUN_TAG = "NN"
# forms that are nothing but a personal pronoun, whatever HanTa tagged them ("mir" as a name)
OBJECT_ONLY_PRONOUNS = frozenset(
    {"mir", "mich", "dir", "dich", "uns", "euch", "ihm", "ihn", "ihnen"}
)
# degree forms HanTa keeps as their own lemma; TIGER and UD German lemmatise to the positive
POSITIVE_LEMMAS = {"lieber": "lieb"}
# "bis" is a preposition or conjunction in UD German GSD, never an adverb
PREPOSITIONS_ONLY = frozenset({"bis"})
# "etwas"/"was" stand for a noun phrase (UD PRON) even where HanTa reads a determiner
INDEFINITE_PRONOUNS = frozenset({"etwas", "was"})


def corrected(
    words: list[str],
    tagged: list[tuple[str, str, str]],
    noun_lemma: Callable[[str], str] = str,
) -> list[tuple[str, str, str]]:
    """HanTa's ``(word, lemma, tag)`` triples with the corrections above applied: first those
    that need the word alone, then those that read the corrected tag of the next word.

    ``noun_lemma`` gives HanTa's lemma of a capitalised noun form (for the dative plural rule)."""
    out = [_word_rule(word, lemma, tag, noun_lemma) for word, lemma, tag in tagged]
    for i, (word, _lemma, tag) in enumerate(list(out)):
        lower = word.lower()
        following = _next_tag(out, i)
        previous = out[i - 1][2] if i else ""
        if tag == "ART" and lower in ARTICLE_FORMS and not following.startswith(NOMINAL_TAGS):
            if previous.startswith("APPR") and not following.startswith(SUBJECT_TAGS):
                continue  # "mit dem": after a preposition, an article unless a subject follows ("in dem ich")
            out[i] = (word, "der", "PRELS")  # no noun phrase follows: a relative or demonstrative
        elif tag.startswith("ADJ(A)") and following == REFLEXIVE_TAG:
            out[i] = (word, lower, "VVFIN")  # "breiten sich ... aus": no adjective precedes "sich"
    return out


def _word_rule(
    word: str, lemma: str, tag: str, noun_lemma: Callable[[str], str]
) -> tuple[str, str, str]:
    lower = word.lower()
    if lower in PRONOUN_LEMMAS and (tag in PERSONAL_TAGS or lower in OBJECT_ONLY_PRONOUNS):
        return (word, PRONOUN_LEMMAS[lower], "PPER")
    if tag.startswith(QUANTIFIER_TAGS) and lemma.lower() in QUANTIFIER_LEMMAS:
        return (word, lemma, "PIAT")  # a quantifier: a determiner
    if tag == PARTICLE_TAG and lower not in PREPOSITION_PARTICLES:
        return (word, lower, "ADV")
    if tag == DEGREE_TAG and lower == "zu":
        return (word, lower, "ADV")
    if tag == NOMINALISED_ADJECTIVE_TAG and lemma.lower() == lower + "e":
        return (word, lower, "ADJD")  # uninflected ("es bleibt frostfrei"): not a noun
    if tag == NOUN_TAG and _dative_plural_of_er_noun(word, lemma, noun_lemma):
        return (word, word[:-1], tag)
    if tag == NAME_TAG and lemma.lower() != lower.removesuffix("s"):
        return (word, word, tag)  # a name is its own lemma, or its genitive's (HanTa: "thoman")
    if lemma.lower() in POSITIVE_LEMMAS:
        return (word, POSITIVE_LEMMAS[lemma.lower()], tag)
    if lower in PREPOSITIONS_ONLY and tag == "ADV":
        return (word, lower, "APPR")
    if lower in INDEFINITE_PRONOUNS and tag.startswith("PIAT"):
        return (word, lower, "PIS")
    if lower == "was" and lemma.lower() == "wer":
        return (word, lower, tag)  # "was" is its own lemma in UD German, not "wer"
    if lower.endswith(".") and lower[:-1].isalpha():
        return (word, lower, tag)  # an abbreviation ("dr.", "st.") keeps its full stop
    return (word, lemma, tag)


def _dative_plural_of_er_noun(word: str, lemma: str, noun_lemma: Callable[[str], str]) -> bool:
    """``schauern`` is ``Schauer`` + dative plural ``-n``; HanTa, not knowing ``Schauer``, cuts
    ``-ern`` as if it were a plural suffix (``Schau``). The ``-n`` form's stem is the lemma when
    HanTa cut more than the ``-n`` and does not read the stem as a plural of the same noun
    (``Kindern``: ``Kinder`` is ``Kind``'s plural)."""
    if not word.endswith("ern") or len(lemma) >= len(word) - 1:
        return False
    return noun_lemma(word[:-1].capitalize()).lower() != lemma.lower()


def _next_tag(tagged: list[tuple[str, str, str]], i: int) -> str:
    """The tag after word ``i``, past degree adverbs ("die sehr guten ...": an article)."""
    for _, _, tag in tagged[i + 1 :]:
        if tag != "ADV":
            return tag
    return ""
