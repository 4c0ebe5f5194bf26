"""Corrections HanTa's analyses need on lower-cased, unpunctuated German (Phoenix14T's text),
each measured on the UD German GSD dev set with ``bench/pseudo_gloss_quality.py``.

HanTa lemmatises object pronouns to the reflexive (``uns`` -> ``sich``) or leaves them as
written (``mir``), tags a lower-cased relative or demonstrative ``der`` as an article,
quantifiers such as ``alle`` or ``andere`` as pronouns or adjectives where UD German has
determiners, and separable verb particles all alike; on words it does not know it cuts endings
that are part of the word (``schauern`` -> ``schau``, ``thomann`` -> ``thoman``) and reads
lower-case words by their ending (``frostfrei`` a noun, ``breiten`` before ``sich`` an
adjective). It lemmatises predicative participles as adjectives (``begeistert``) where UD German
GSD, after TIGER, gives the verb, reads foreign words (FM) and some conjunctions (``weil``,
``oder``) as names or stray tags, and takes a der-form before another determiner for an
article. It reads ``den`` as the name ``Den`` (Den Haag) and, after it, a plural noun it does
not know in lower case as a verb (``in den hochlagen`` -> ``hochliegen``). The rules look at the
word and at the tags around it: the input has no commas to find a clause by, so a clause's
start is known only at the sentence's start.
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
# forms a relative or demonstrative pronoun shares with the article ("des" is only an article)
ARTICLE_FORMS = frozenset({"der", "die", "das", "dem", "den", "dessen", "deren", "denen"})
# the tags a der-form may have; any other (HanTa: "den" NE, the name "Den") is a misreading
DER_FORM_TAGS = ("ART", "PRELS", "PDS", "PRELAT", "PDAT")
# verb tags a noun HanTa does not know in lower case gets ("hochlagen": VV(FIN), "hochliegen")
LEXICAL_VERB_TAGS = ("VV(FIN)", "VV(INF)", "VVFIN", "VVINF")
NOMINAL_TAGS = ("NN", "NE", "ADJA", "ADJ(A)", "CARD", "PIAT", "PIDAT", "PPOSAT", "ART", "TRUNC")
SUBJECT_TAGS = ("PPER", "PIS", "PDS")
VERB_TAGS = ("VV", "VA", "VM")
FINITE_VERB_TAGS = ("VV(FIN)", "VA(FIN)", "VM(FIN)", "VVFIN", "VAFIN", "VMFIN")
# pronouns a partitive genitive follows: "einer der besten", "keines der Kinder"
PARTITIVE_PRONOUNS = frozenset(
    f"{stem}{ending}" for stem in ("ein", "kein", "jed") for ending in ("e", "er", "es", "em")
)
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
SUPERLATIVE_QUANTIFIERS = frozenset({"meiste", "meisten"})
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
CIRCUMPOSITION_TAG = "APZR"  # "von innen heraus": the same split as separable particles
# "zu" before an adjective ("zu groß") is a degree adverb in UD German (HanTa: PTKA)
DEGREE_TAG = "PTKA"
# and so is "zu" before "viel"/"wenig" ("zu viele Wolken"; "zu vielen Orten" is a preposition)
DEGREE_QUANTIFIERS = frozenset({"viel", "viele", "wenig", "wenige"})
NAME_TAG = "NE"
NOMINALISED_ADJECTIVE_TAG = "NNA"
REFLEXIVE_TAG = "PRF"
NOUN_TAG = "NN"
# forms that are nothing but a personal pronoun, whatever HanTa tagged them ("mir" as a name)
OBJECT_ONLY_PRONOUNS = frozenset(
    {"mir", "mich", "dir", "dich", "uns", "euch", "ihm", "ihn", "ihnen"}
)
# degree forms HanTa keeps as their own lemma; TIGER and UD German lemmatise to the positive
POSITIVE_LEMMAS = {"lieber": "lieb", "nächst": "nah"}
# "bis" is a preposition or conjunction in UD German GSD, never an adverb
PREPOSITIONS_ONLY = frozenset({"bis"})
# "genug" and "soviel" are adverbs in STTS and UD German, never determiners ("genug Zeit")
ADVERBS_ONLY = frozenset({"genug", "soviel"})
# "etwas"/"was" stand for a noun phrase (UD PRON) even where HanTa reads a determiner
INDEFINITE_PRONOUNS = frozenset({"etwas", "was"})
# UD German GSD tags demonstrative "dieser" and "derselbe"/"selber" DET even without a noun
# ("dies gilt"), "ein paar" ADJ, and "dessen"/"deren"/"denen" PRON with lemma "der"
DETERMINER_LEMMAS = frozenset({"dies", "diese", "dieser", "selb", "selber", "welch", "welcher"})
# "aber"/"doch" are adverbs inside a clause ("ich werde aber nicht ...") and conjunctions when they
# open one; only the sentence's first word is known to open a clause in unpunctuated text
OPENING_CONJUNCTIONS = frozenset({"aber", "doch"})
FOREIGN_TAG = "FM"
# words that are conjunctions whatever their context (UD CCONJ/SCONJ, dropped either way)
CONJUNCTIONS = {
    **dict.fromkeys(("und", "oder", "bzw", "sowie", "sondern"), "KON"),
    **dict.fromkeys(
        ("weil", "falls", "obwohl", "obgleich", "dass", "daß", "sobald", "sofern", "wenn")
        + ("nachdem", "ob"),
        "KOUS",
    ),
}
# greetings are interjections (UD INTJ); case-insensitive HanTa reads "hallo" as the noun
GREETINGS = frozenset({"hallo", "tschüss", "tschüs", "ade", "adieu", "servus", "moin", "hey"})
# abbreviations that close a list ("käse etc."): UD X, no content word of their own
LIST_ENDINGS = frozenset({"etc.", "etc", "usw.", "usw", "uvm.", "uvm", "usf.", "usf"})
# lower-cased "EUR" after an amount; HanTa reads the archaic possessive "eur" (euer)
CURRENCY = "eur"
RELATIVE_ONLY_FORMS = frozenset({"dessen", "deren", "denen"})
# tags no article stands directly before: another determiner, a possessive, "kein"
DETERMINER_TAGS = ("ART", "PPOSAT", "PDAT", "PRELAT")
NEGATIVE_DETERMINERS = frozenset({"kein", "keine", "keinen", "keinem", "keiner", "keines"})
# the head of a prepositional phrase inside a pre-noun attribute ("der für Cuxhaven einmalige Blick")
PHRASE_HEAD_TAGS = ("NN", "NE", "CARD", "PPER", "PIS", "FM")
MODIFIER_TAGS = ("ADV", "ADJ(D)", "ADJD", "PTKNEG", "PTKA")
PREPOSITION_TAGS = ("APPR", "APPRART")
ATTRIBUTIVE_TAGS = ("ADJ(A)", "ADJA")
# a participle that ends a clause ("wurde erledigt", "war begeistert") is lemmatised to its verb
# in UD German GSD (TIGER's VVPP lemmas), unless it is coordinated with or modifies a word
PARTICIPLE_ENDINGS = ("t", "en")
NOT_BEFORE_PARTICIPLE = ("KON",)
NOT_AFTER_PARTICIPLE = ("ADJ", "NN", "APPR", "KON")
# participle forms whose adjective or adverb sense the verb does not carry ("bekannt" 'known' is
# not "bekennen" 'confess', "bestimmt" 'certainly' not "bestimmen"): UD German keeps the form
LEXICALISED_PARTICIPLES = frozenset({"bekannt", "bestimmt"})


def corrected(
    words: list[str],
    tagged: list[tuple[str, str, str]],
    noun_lemma: Callable[[str], str] = str,
    participle_lemma: Callable[[str], str | None] = lambda word: None,
    guessed_noun: Callable[[str], bool] = lambda word: False,
    noun_reading: Callable[[str], str | None] = lambda word: None,
) -> list[tuple[str, str, str]]:
    """HanTa's ``(word, lemma, tag)`` triples with the corrections above applied: first those
    that need the word alone, then those that read the corrected tag of the next word.

    ``noun_lemma`` gives HanTa's lemma of a capitalised noun form (for the dative plural rule);
    ``participle_lemma`` the verb a word is the past participle of, if HanTa can read it so;
    ``guessed_noun`` whether HanTa's noun analysis of a word rests on a stem it does not know;
    ``noun_reading`` the noun lemma of a word HanTa can read, capitalised, as a noun."""
    out = [_word_rule(word, lemma, tag, noun_lemma, guessed_noun) for word, lemma, tag in tagged]
    _nouns_after_articles(out, noun_reading)
    if out and out[0][0].lower() in OPENING_CONJUNCTIONS:
        out[0] = (out[0][0], out[0][0].lower(), "KON")  # "aber die Bundesbank ...": a conjunction
    for i, (word, lemma, tag) in enumerate(list(out)):
        lower = word.lower()
        following = _next_tag(out, i)
        previous = out[i - 1][2] if i else ""
        if tag == "ART" and lower in ARTICLE_FORMS and _pronoun_not_article(out, i, previous):
            out[i] = (word, "der", "PRELS")  # a relative or demonstrative pronoun
        elif lower == "der" and tag in ("PRELS", "PDS") and _after_partitive(out, i):
            out[i] = (word, "der", "ART")  # "eine der besten": a partitive genitive's article
        elif lower == "zu" and tag == "APPR" and _next_word(out, i).lower() in DEGREE_QUANTIFIERS:
            out[i] = (word, lower, "ADV")  # "zu viele": a degree adverb
        elif lower == "noch" and any(w.lower() == "weder" for w, _, _ in out[:i]):
            out[i] = (word, lower, "KON")  # "weder ... noch": a conjunction
        elif tag.startswith("ADJ(A)") and following == REFLEXIVE_TAG:
            out[i] = (word, lower, "VVFIN")  # "breiten sich ... aus": no adjective precedes "sich"
        elif tag.startswith(("ADJ(D)", "ADJD")) and lemma.lower() == lower:
            verb = _clause_final_participle(out, i, participle_lemma)
            if verb:
                out[i] = (word, verb, tag)
    return out


def _nouns_after_articles(
    tagged: list[tuple[str, str, str]], noun_reading: Callable[[str], str | None]
) -> None:
    """A preposition, a der-form and a lexical verb ("in den hochlagen", HanTa: "hochliegen")
    is no German phrase (a relative clause puts its verb last): the verb form is a noun HanTa
    knows only capitalised, and the der-form its article (decided by the rules that follow)."""
    for i in range(1, len(tagged) - 1):
        word, _, tag = tagged[i + 1]
        if not (
            tagged[i - 1][2].startswith(PREPOSITION_TAGS)
            and tagged[i][0].lower() in ARTICLE_FORMS
            and tag in LEXICAL_VERB_TAGS
        ):
            continue
        lemma = noun_reading(word.lower())
        if lemma is not None:
            tagged[i + 1] = (word, lemma, NOUN_TAG)


def _pronoun_not_article(tagged: list[tuple[str, str, str]], i: int, previous: str) -> bool:
    """Whether the article-formed word ``i`` is a pronoun: no noun phrase follows it, or one that
    opens with its own determiner ("der das Unglück überlebte": no article precedes another).
    A sentence opens with a demonstrative only right before its verb or an adverb ("das ist",
    "die kommen"), else with an article ("die seit 1975 ..."); "einer der ..." is partitive."""
    if i == 0 and len(tagged) > 1 and not tagged[1][2].startswith(FINITE_VERB_TAGS + ("ADV",)):
        return False
    if tagged[i][0].lower() == "der" and _after_partitive(tagged, i):
        return False
    following = _next_tag(tagged, i)
    if following.startswith(NOMINAL_TAGS):
        after = _next_word(tagged, i).lower()
        return following.startswith(DETERMINER_TAGS) or after in NEGATIVE_DETERMINERS
    if previous.startswith("APPR") and not following.startswith(SUBJECT_TAGS + VERB_TAGS):
        # "mit dem": after a preposition, an article unless a subject or a verb follows ("in dem
        # ich", "um das dann auszuführen")
        return False
    return not _attribute_follows(tagged, i)


def _after_partitive(tagged: list[tuple[str, str, str]], i: int) -> bool:
    return i > 0 and tagged[i - 1][0].lower() in PARTITIVE_PRONOUNS


def _attribute_follows(tagged: list[tuple[str, str, str]], i: int) -> bool:
    """Whether an attributive adjective follows word ``i`` past adverbs and prepositional
    phrases: "der für Cuxhaven einmalige Blick" is an article before an extended attribute,
    "der in Schnee übergeht" a relative pronoun before its verb."""
    j = i + 1
    while j < len(tagged):
        tag = tagged[j][2]
        if tag.startswith(ATTRIBUTIVE_TAGS):
            return True
        if tag.startswith(PREPOSITION_TAGS):
            j += 1  # to the phrase's head: a noun, or an adverb right after it ("für morgen")
            while j + 1 < len(tagged) and not tagged[j][2].startswith(PHRASE_HEAD_TAGS):
                if tagged[j][2] == "ADV" and tagged[j - 1][2].startswith(PREPOSITION_TAGS):
                    break
                j += 1
        elif not tag.startswith(MODIFIER_TAGS):
            return False
        j += 1
    return False


def _clause_final_participle(
    tagged: list[tuple[str, str, str]], i: int, participle_lemma: Callable[[str], str | None]
) -> str | None:
    """The verb of a predicative participle HanTa tagged an adjective ("ist erledigt" ->
    erledigen), unless the word is negated by ``un-`` (no verb "unverletzen") or stands in a
    coordination or before what it modifies ("freundlich und bemüht", "ausgesprochen ruhig")."""
    lower = tagged[i][0].lower()
    if lower.startswith("un") or not lower.endswith(PARTICIPLE_ENDINGS):
        return None
    if lower in LEXICALISED_PARTICIPLES:
        return None
    previous = tagged[i - 1][2] if i else ""
    following = tagged[i + 1][2] if i + 1 < len(tagged) else ""
    if previous.startswith(NOT_BEFORE_PARTICIPLE) or following.startswith(NOT_AFTER_PARTICIPLE):
        return None
    return participle_lemma(lower)


def _word_rule(
    word: str,
    lemma: str,
    tag: str,
    noun_lemma: Callable[[str], str],
    guessed_noun: Callable[[str], bool],
) -> tuple[str, str, str]:
    lower = word.lower()
    if lower in CONJUNCTIONS:  # closed classes first: HanTa reads "weil", "falls", "ade" as names
        return (word, lower, CONJUNCTIONS[lower])
    if lower in GREETINGS:
        return (word, lower, "ITJ")
    if lower in ARTICLE_FORMS and tag not in DER_FORM_TAGS:
        # never a name ("den" is not "Den" of Den Haag): an article, or in context a pronoun
        return (word, "der", "PRELS" if lower in RELATIVE_ONLY_FORMS else "ART")
    if lower in LIST_ENDINGS:
        return (word, lower, "XY")
    if lower in PRONOUN_LEMMAS and (tag in PERSONAL_TAGS or lower in OBJECT_ONLY_PRONOUNS):
        return (word, PRONOUN_LEMMAS[lower], "PPER")
    if lower in SUPERLATIVE_QUANTIFIERS and tag.startswith(QUANTIFIER_TAGS):
        return (word, "meist", "PIAT")  # "die meisten": a determiner (HanTa: "meister")
    if tag.startswith(QUANTIFIER_TAGS) and lemma.lower() in QUANTIFIER_LEMMAS:
        return (word, lemma, "PIAT")  # a quantifier: a determiner
    if tag in (PARTICLE_TAG, CIRCUMPOSITION_TAG) and lower not in PREPOSITION_PARTICLES:
        return (word, lower, "ADV")
    if tag == DEGREE_TAG and lower == "zu":
        return (word, lower, "ADV")
    if tag == NOMINALISED_ADJECTIVE_TAG and lemma.lower() == lower + "e":
        return (word, lower, "ADJD")  # uninflected ("es bleibt frostfrei"): not a noun
    if tag == NOUN_TAG and _dative_plural_of_er_noun(word, lemma, noun_lemma):
        return (word, word[:-1], tag)
    if tag == NOUN_TAG and lemma.lower() != lower and guessed_noun(lower):
        # an ending cut from a stem HanTa has never seen is a guess; such words are mostly names
        # ("torsten" -> "torste", "rübben" -> "rübbe"), whose lemma is the word
        return (word, word, tag)
    if tag == NAME_TAG and (lemma.lower() != lower.removesuffix("s") or lower.endswith("ss")):
        # a name is its own lemma, or its genitive's (HanTa: "thoman"); no genitive "-s" follows
        # "ss" (HanTa: "hochdruckeinflus")
        return (word, word, tag)
    if lemma.lower() in POSITIVE_LEMMAS:
        return (word, POSITIVE_LEMMAS[lemma.lower()], tag)
    if lower in ADVERBS_ONLY and tag.startswith(QUANTIFIER_TAGS):
        return (word, lower, "ADV")
    if lower in PREPOSITIONS_ONLY and tag == "ADV":
        return (word, lower, "APPR")
    if lower in INDEFINITE_PRONOUNS and tag.startswith("PIAT"):
        return (word, lower, "PIS")
    if lower == "was" and lemma.lower() == "wer":
        return (word, lower, tag)  # "was" is its own lemma in UD German, not "wer"
    if lower == CURRENCY:
        return (word, lower, NAME_TAG)  # the currency code (UD PROPN), not "euer"
    if tag == FOREIGN_TAG and lower.isalpha():
        return (word, lower, NOUN_TAG)  # UD German tags foreign words by their use, mostly nouns
    if lower in RELATIVE_ONLY_FORMS:
        return (word, "der", "PRELS")
    if lower == "paar" and tag.startswith(QUANTIFIER_TAGS):
        return (word, lower, "ADJA")  # "ein paar": an adjective in UD German
    if lemma.lower() in DETERMINER_LEMMAS and tag in ("PDS", "PIS", "PWS", "ADJ(A)", "ADJA"):
        return (word, lemma, "PDAT")
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


def _next_word(tagged: list[tuple[str, str, str]], i: int) -> str:
    """The word after word ``i``, past adverbs, as :func:`_next_tag` finds it."""
    for word, _, tag in tagged[i + 1 :]:
        if tag != "ADV":
            return word
    return ""
