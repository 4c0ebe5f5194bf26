"""Pseudo-gloss quality against gold treebanks: multiset precision, recall and F1 of the
pseudo-glosses prep's pipelines give, over every sentence of a CoNLL-U file.

Gold pseudo-glosses of a sentence are the lemmas (German, lower-cased) or words (Chinese) whose
gold UPOS is NOUN, NUM, ADV, PRON, PROPN, ADJ or VERB, under the convention of spaCy's German
pipelines that Sign2GPT used: modal verbs are kept (VERB) and every form of sein, haben and
werden is dropped (AUX), whatever the treebank says. The input is Phoenix-style: German words
lower-cased with punctuation dropped (multi-word tokens such as ``im`` as written); Chinese
characters as written, without spaces. Defaults: the Universal Dependencies dev sets in
../shared/data/ud/ (German GSD, Chinese GSDSimp). Goals: German F1 >= 0.97, Chinese >= 0.82.

    python bench/pseudo_gloss_quality.py [--conllu FILE --language de|zh] [--spacy-model NAME]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _results import record

from stages.pseudo_gloss import pseudo_glosses_of
from stages.pseudo_gloss.languages import load_pipeline, pipeline_name
from stages.pseudo_gloss.tagsets import KEPT_UPOS

REPO = Path(__file__).resolve().parents[1]
UD = REPO.parent / "shared" / "data" / "ud"
DEFAULT_SETS = (("de", UD / "de_gsd-ud-dev.conllu"), ("zh", UD / "zh_gsdsimp-ud-dev.conllu"))
GOALS = {"de": 0.97, "zh": 0.82}
MODALS = frozenset({"können", "müssen", "sollen", "wollen", "dürfen", "mögen", "möchten"})
AUXILIARIES = frozenset({"sein", "haben", "werden"})
TOP_ERRORS = 25


@dataclass
class Sentence:
    text: str  # the pipeline's input
    gold: list[str] = field(default_factory=list)


def read_conllu(path: Path, language: str) -> list[Sentence]:
    """Sentences of a CoNLL-U file as (input text, gold pseudo-glosses)."""
    sentences, words, gold, covered = [], [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if words:
                joiner = "" if language == "zh" else " "
                text = joiner.join(words)
                sentences.append(Sentence(text.lower() if language == "de" else text, gold))
            words, gold, covered = [], [], 0
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if "." in cols[0]:
            continue  # an empty node
        if "-" in cols[0]:  # a multi-word token: its surface form is the input
            words.append(cols[1])
            covered = int(cols[0].split("-")[1])
            continue
        number, form, lemma, upos = int(cols[0]), cols[1], cols[2], cols[3]
        if number > covered and (
            language == "zh" or upos != "PUNCT"
        ):  # Chinese keeps its punctuation
            words.append(form)
        if gold_kept(language, lemma, upos):
            gold.append(lemma.lower() if language == "de" else form)
    return sentences


def gold_kept(language: str, lemma: str, upos: str) -> bool:
    if language == "de":
        if lemma.lower() in AUXILIARIES:
            return False
        if lemma.lower() in MODALS:
            return True
    return upos in KEPT_UPOS


@dataclass
class Score:
    true_positives: int = 0
    predicted: int = 0
    gold: int = 0
    missed: Counter = field(default_factory=Counter)
    extra: Counter = field(default_factory=Counter)

    def add(self, predicted: list[str], gold: list[str]) -> None:
        p, g = Counter(predicted), Counter(gold)
        self.true_positives += sum((p & g).values())
        self.predicted += len(predicted)
        self.gold += len(gold)
        self.missed.update(g - p)
        self.extra.update(p - g)

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def score(path: Path, language: str, spacy_model: str | None) -> Score:
    sentences = read_conllu(path, language)
    with tempfile.TemporaryDirectory() as cache:
        nlp = load_pipeline(language, spacy_model, Path(cache))
        result = Score()
        for sentence, doc in zip(sentences, nlp.pipe(s.text for s in sentences)):
            result.add(pseudo_glosses_of(doc, language), sentence.gold)
    return result


def errors_table(result: Score) -> list[str]:
    errors = [(n, "missed", g) for g, n in result.missed.items()] + [
        (n, "extra", g) for g, n in result.extra.items()
    ]
    errors.sort(key=lambda e: (-e[0], e[1], e[2]))
    return [f"  {kind:<6} {gloss:<20} {count}" for count, kind, gloss in errors[:TOP_ERRORS]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--conllu", type=Path, help="a CoNLL-U file (default: the shared UD dev sets)"
    )
    parser.add_argument(
        "--language", choices=("de", "zh"), help="the file's language (with --conllu)"
    )
    parser.add_argument(
        "--spacy-model", help="score an installed spaCy pipeline instead of the offline default"
    )
    args = parser.parse_args()
    sets = [(args.language, args.conllu)] if args.conllu else list(DEFAULT_SETS)
    missing = [str(path) for _, path in sets if not path or not path.is_file()]
    if missing or any(language is None for language, _ in sets):
        sys.exit(f"not found or no --language: {', '.join(missing) or args.conllu}")
    for language, path in sets:
        result = score(path, language, args.spacy_model)
        name = pipeline_name(language, args.spacy_model)
        print(
            f"{path.name} ({language}, {name}): P {result.precision:.3f} R {result.recall:.3f} F1 {result.f1:.3f} "
            f"over {result.gold} gold pseudo-glosses; goal F1 >= {GOALS[language]}"
        )
        print(f"the {TOP_ERRORS} most frequent errors (kind, gloss, count):")
        print("\n".join(errors_table(result)))
        record(
            "pseudo_gloss_quality",
            f"{path.name}, {name}: F1 (P, R)",
            f"F1 {result.f1:.3f} (P {result.precision:.3f}, R {result.recall:.3f})",
            f"goal F1 {GOALS[language]}",
            result.f1 / GOALS[language],
            ">= 1.0",
        )


if __name__ == "__main__":
    main()
