"""bench/pseudo_gloss_quality.py: gold pseudo-glosses read from CoNLL-U by the yardstick's
conventions, multiset scoring, and the offline pipelines' scores on the UD dev sets."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO, shared_file

sys.path.insert(0, str(REPO / "bench"))
import pseudo_gloss_quality as quality  # noqa: E402

CONLLU = """# text = Im Sommer ist es warm, wir können baden.
1-2\tIm\t_\t_\t_\t_\t_\t_\t_\t_
1\tIn\tin\tADP\tAPPR\t_\t3\tcase\t_\t_
2\tdem\tder\tDET\tART\t_\t3\tdet\t_\t_
3\tSommer\tSommer\tNOUN\tNN\t_\t6\tobl\t_\t_
4\tist\tsein\tAUX\tVAFIN\t_\t6\tcop\t_\t_
5\tes\tes\tPRON\tPPER\t_\t6\tnsubj\t_\t_
6\twarm\twarm\tADJ\tADJD\t_\t0\troot\t_\tSpaceAfter=No
7\t,\t,\tPUNCT\t$,\t_\t10\tpunct\t_\t_
8\twir\twir\tPRON\tPPER\t_\t10\tnsubj\t_\t_
9\tkönnen\tkönnen\tAUX\tVMFIN\t_\t10\taux\t_\t_
10\tbaden\tbaden\tVERB\tVVINF\t_\t6\tconj\t_\tSpaceAfter=No
11\t.\t.\tPUNCT\t$.\t_\t6\tpunct\t_\t_

"""


def test_gold_follows_the_yardsticks_conventions(tmp_path):
    path = tmp_path / "tiny.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    [sentence] = quality.read_conllu(path, "de")
    assert (
        sentence.text == "im sommer ist es warm wir können baden"
    )  # lower-cased, surface im, no punctuation
    assert sentence.gold == [
        "sommer",
        "es",
        "warm",
        "wir",
        "können",
        "baden",
    ]  # sein dropped, modal kept


def test_multiset_precision_recall_and_f1():
    score = quality.Score()
    score.add(["tag", "tag", "regen"], ["tag", "regen", "sonne"])
    score.add(["wind"], ["wind"])
    assert (score.true_positives, score.predicted, score.gold) == (3, 4, 4)
    assert score.precision == score.recall == score.f1 == 0.75
    assert score.missed == {"sonne": 1} and score.extra == {"tag": 1}


@pytest.mark.parametrize(
    "language, name, floor",
    [("de", "de_gsd-ud-dev.conllu", 0.95), ("zh", "zh_gsdsimp-ud-dev.conllu", 0.73)],
)
def test_the_offline_pipelines_hold_their_measured_quality(language, name, floor):
    result = quality.score(shared_file(f"data/ud/{name}"), language, None)
    assert result.f1 >= floor, (result.precision, result.recall, result.f1)
