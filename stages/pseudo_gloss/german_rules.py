"""Corrections HanTa's analyses need on lower-cased, unpunctuated German (Phoenix14T's text),
each measured on the UD German GSD dev set with ``bench/pseudo_gloss_quality.py``.

HanTa lemmatises object pronouns to the reflexive (``uns`` -> ``sich``) or leaves them as
written (``mir``), tags a lower-cased relative or demonstrative ``der`` as an article, and quantifiers such as
``alle`` or ``andere`` as pronouns or adjectives where UD German has determiners. The rules look at the word and the tag
of the next word only (the input has no commas to find a clause by).
"""

from __future__ import annotations

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


def corrected(words: list[str], tagged: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """HanTa's ``(word, lemma, tag)`` triples with the corrections above applied."""
    out = list(tagged)
    for i, (word, lemma, tag) in enumerate(tagged):
        lower = word.lower()
        following = tagged[i + 1][2] if i + 1 < len(tagged) else ""
        previous = tagged[i - 1][2] if i else ""
        if tag in PERSONAL_TAGS and lower in PRONOUN_LEMMAS:
            out[i] = (word, PRONOUN_LEMMAS[lower], tag)
        elif tag == "ART" and lower in ARTICLE_FORMS and not following.startswith(NOMINAL_TAGS):
            if previous.startswith("APPR") and not following.startswith(SUBJECT_TAGS):
                continue  # "mit dem": after a preposition, an article unless a subject follows ("in dem ich")
            out[i] = (word, "der", "PRELS")  # no noun phrase follows: a relative or demonstrative
        elif tag.startswith(QUANTIFIER_TAGS) and lemma.lower() in QUANTIFIER_LEMMAS:
            out[i] = (word, lemma, "PIAT")  # a quantifier: a determiner
    return out
