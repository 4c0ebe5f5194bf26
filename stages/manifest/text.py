"""The one normal form every corpus's text takes on entering the manifest.

The same sentence must give the same glosses and the same vocabulary whichever way its file
spelt it: ``süden`` typed with a combining diaeresis (NFD, as macOS file tools and some
exports write it) is HanTa's ``süde`` and a second vocabulary entry; a zero-width space or a
soft hyphen left in a word (``re\\u200bgen``, ``schnee\\u00adfall``) splits or hides it. So the
text and gloss fields of every reader are normalised once, here, before any check reads them:

- NFC, never NFKC for the whole text: NFKC rewrites characters that carry meaning in German
  and English text (``²`` -> ``2``, ``ﬁ`` -> ``fi``, ``½`` -> ``1⁄2``).
- Characters that are never seen and never mean anything in running text are removed: zero-
  width space, word joiner, BOM / zero-width no-break space, soft hyphen.
- The zero-width (non-)joiners are removed after a letter of a script that has no joining
  (Latin, Greek, Cyrillic, Han, Kana, Hangul...), where they are only debris; they are kept
  where they shape the text: Arabic and Persian (``می\\u200cخواهم``), the Indic scripts, and emoji
  sequences.
- In Chinese (and Cantonese) text, full-width digits and Latin letters, the full-width point
  and percent sign, and the ideographic space take their NFKC form, so ``１２３`` is the
  number ``123`` that half-width text writes. Chinese punctuation (``，：；！？（）``) is
  full-width by convention (GB/T 15834) and stays as written.
"""

from __future__ import annotations

import unicodedata

# recorded in the manifest's provenance; change it whenever :func:`normalised` changes
TEXT_NORMALISATION = "nfc+strip-invisible+fullwidth-nfkc-v1"
INVISIBLE = frozenset("\u200b\u2060\ufeff\u00ad")  # zero-width space, word joiner, BOM, soft hyphen
JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner
# languages (primary subtag) whose text writes full-width forms for half-width ones
FULLWIDTH_LANGUAGES = frozenset({"zh", "cmn", "yue"})
IDEOGRAPHIC_SPACE = "\u3000"
FULLWIDTH_NUMERIC_SIGNS = frozenset("\uff0e\uff05")  # ． ％: inside numbers, not punctuation
# code points before Arabic (Latin, Greek, Cyrillic, Armenian, Hebrew) and the East Asian
# blocks: scripts in which a joiner changes nothing
_NON_JOINING_BELOW = 0x0600
_EAST_ASIAN = ((0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))


def normalised(text: str | None, language: str | None) -> str | None:
    """``text`` in the manifest's normal form (see the module docstring); None stays None."""
    if text is None:
        return None
    text = "".join(ch for ch in text if ch not in INVISIBLE)
    # NFC last: a removed character may have stood between a letter and its combining mark
    text = unicodedata.normalize("NFC", _without_idle_joiners(text))
    if _writes_fullwidth(language):
        text = "".join(_halfwidth(ch) for ch in text)
    return text


def _without_idle_joiners(text: str) -> str:
    """Drops a zero-width (non-)joiner unless the character before it belongs to a script in
    which it shapes the text (or is a symbol, as in emoji sequences)."""
    if not JOINERS.intersection(text):
        return text
    kept: list[str] = []
    for ch in text:
        if ch in JOINERS and (not kept or _non_joining(kept[-1])):
            continue
        kept.append(ch)
    return "".join(kept)


def _non_joining(ch: str) -> bool:
    point = ord(ch)
    if point < _NON_JOINING_BELOW:
        return True
    return any(low <= point <= high for low, high in _EAST_ASIAN)


def _writes_fullwidth(language: str | None) -> bool:
    primary = (language or "").strip().lower().replace("_", "-").split("-")[0]
    return primary in FULLWIDTH_LANGUAGES


def _halfwidth(ch: str) -> str:
    """A full-width digit, Latin letter, point or percent sign, or the ideographic space, as
    NFKC writes it; any other character as it is."""
    if ch == IDEOGRAPHIC_SPACE or ch in FULLWIDTH_NUMERIC_SIGNS:
        return unicodedata.normalize("NFKC", ch)
    if "\uff10" <= ch <= "\uff19" or "\uff21" <= ch <= "\uff3a" or "\uff41" <= ch <= "\uff5a":
        return unicodedata.normalize("NFKC", ch)
    return ch
