"""A vocabulary (from the training split, or every split as Sign2GPT builds it), with ids that
never depend on hash seeds or order.

Ids are assigned in sorted (Unicode code point) order of the pseudo-glosses, starting at 1;
id 0 is the blank class (its prototype is the zero vector).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

VOCAB_FILE = "vocab.json"  # the stage's vocabulary, beside its tables
PROTOTYPES_FILE = "prototypes.npy"
BLANK_ID = 0
OOV_ID = -1


@dataclass(frozen=True)
class Vocabulary:
    glosses: tuple[str, ...]  # sorted; id = position + 1
    counts: dict[str, int]  # occurrences in the vocabulary's rows (duplicate sentences too)
    sentence_counts: dict[str, int]  # unique sentences containing the gloss
    dropped: tuple[str, ...]  # removed by the frequency filter
    unique_sentences: int

    def ids(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.glosses, start=1)}

    def encode(self, sequence: Sequence[str]) -> list[int]:
        table = self.ids()
        return [table.get(g, OOV_ID) for g in sequence]

    def rows(self) -> list[dict]:
        return [
            {"id": i, "gloss": g, "count": self.counts[g], "sentences": self.sentence_counts[g]}
            for i, g in enumerate(self.glosses, start=1)
        ]


SHARE_BY = ("sentences", "occurrences")


def build_vocabulary(
    rows: Iterable[tuple[str, Sequence[str]]],
    max_share: float | None,
    share_by: str = "sentences",
) -> Vocabulary:
    """``rows`` yields (translation, pseudo-glosses), one per sample. With ``max_share``, a gloss
    is dropped when its share reaches it: by ``sentences``, the share of unique sentences that
    contain it; by ``occurrences`` (Sign2GPT), its count over every row, repeats and duplicate
    sentences included, divided by the number of unique sentences (ryanwongsa/Sign2GPT
    ``scripts/pseudo_gloss_de.py`` l.56-63 and 80, ``dataloaders/phoenix_video_dataset.py``
    l.91), which can exceed 1 for a word said twice per sentence."""
    counts: Counter[str] = Counter()
    per_sentence: dict[str, set[str]] = {}
    for sentence, glosses in rows:
        counts.update(glosses)
        per_sentence.setdefault(sentence, set()).update(glosses)
    sentence_counts: Counter[str] = Counter(g for glosses in per_sentence.values() for g in glosses)
    unique = len(per_sentence)
    numerator = counts if share_by == "occurrences" else sentence_counts
    dropped = sorted(
        g for g in counts if max_share is not None and unique and numerator[g] / unique >= max_share
    )
    kept = tuple(sorted(set(counts) - set(dropped)))
    return Vocabulary(kept, dict(counts), dict(sentence_counts), tuple(dropped), unique)


def oov_rate(vocabulary: Vocabulary, sequences: Iterable[Sequence[str]]) -> float | None:
    """Share of pseudo-gloss tokens outside the vocabulary (None when there are none)."""
    known = set(vocabulary.glosses)
    total = oov = 0
    for sequence in sequences:
        total += len(sequence)
        oov += sum(1 for g in sequence if g not in known)
    return round(oov / total, 6) if total else None
