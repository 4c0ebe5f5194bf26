"""Pseudo-gloss throughput: the stage (offline default pipelines) on a Phoenix14T-sized German
corpus (the 519 real dev sentences cycled to 8,257) and a CSL-Daily-layout Chinese corpus, with
one and two worker processes. Goal: all of Phoenix14T (~8.3k sentences) under 30 s on 2 cores.

The manifest is built first and not timed; the timed part is ``prep run --stage pseudo-gloss``
(tagging, vocabulary, fastText training, parquet writing). Recorded ratio: seconds scaled to
Phoenix14T's 8,257 sentences over the 30 s budget (goal <= 1.0).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _results import record

from pipeline import synthetic

REPO = Path(__file__).resolve().parents[1]
DEV_SENTENCES = REPO.parent / "shared" / "data" / "phoenix14t_dev.csv"
PHOENIX_SENTENCES = 8257  # train + dev + test
BUDGET_S = 30.0  # goal: all of Phoenix14T on 2 cores


def german_samples(count: int) -> list[synthetic.SyntheticSample]:
    if DEV_SENTENCES.is_file():
        base = synthetic.samples_from_file(DEV_SENTENCES, max_frames=2)
    else:
        base = synthetic.default_samples("de", len(synthetic.GERMAN), (2, 2))
    return [replace(base[i % len(base)], name=f"s{i:05d}") for i in range(count)]


def chinese_samples(count: int) -> list[synthetic.SyntheticSample]:
    return [replace(s, num_frames=2) for s in synthetic.default_samples("zh", count, (2, 2))]


def prep(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", *args, "--quiet"],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def cold_pipeline_rate() -> tuple[int, float]:
    """German pipeline over unique sentences only (the 519 dev ones), word caches cold: the rate a
    corpus without repeated sentences gets, since the cycled corpus above repeats each sentence."""
    from stages.pseudo_gloss.languages import load_pipeline

    sentences = [s.translation for s in german_samples(519)]
    nlp = load_pipeline("de", None, None)
    started = time.perf_counter()
    for _ in nlp.pipe(sentences, batch_size=256):
        pass
    return len(sentences), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=8257)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpora = {
            "German (HanTa)": (
                "phoenix14t",
                synthetic.write_phoenix14t(tmp / "de", german_samples(args.sentences), (8, 10)),
            ),
            "Chinese (jieba + Jiagu dictionary)": (
                "csl-daily",
                synthetic.write_csl_daily(tmp / "zh", chinese_samples(args.sentences), (8, 8)),
            ),
        }
        for language, (dataset, root) in corpora.items():
            out = tmp / f"out-{dataset}"
            prep(
                "--stage",
                "manifest",
                "--dataset",
                dataset,
                "--root",
                str(root),
                "--out",
                str(out),
                "--unit-size",
                "500",
            )
            for workers in (1, 2):
                seconds = prep(
                    "--stage",
                    "pseudo-gloss",
                    "--dataset",
                    dataset,
                    "--root",
                    str(root),
                    "--out",
                    str(out),
                    "--unit-size",
                    "500",
                    "--workers",
                    str(workers),
                    "--overwrite",
                )
                rows.append((language, workers, args.sentences, seconds))
    print("| language | processes | sentences | seconds | sentences/s |")
    print("|---|---|---|---|---|")
    for language, workers, count, seconds in rows:
        print(f"| {language} | {workers} | {count} | {seconds:.1f} | {count / seconds:.0f} |")
        record(
            "pseudo_gloss",
            f"{language}, {workers} process(es), {count} sentences",
            f"{seconds:.1f} s ({count / seconds:.0f} sentences/s)",
            f"budget {BUDGET_S:.0f} s for {PHOENIX_SENTENCES}",
            seconds * PHOENIX_SENTENCES / count / BUDGET_S,
            "<= 1.0",
        )
    count, seconds = cold_pipeline_rate()
    print(
        f"| German, unique sentences, cold caches (nlp.pipe only) | 1 | {count} | {seconds:.2f} | {count / seconds:.0f} |"
    )
    record(
        "pseudo_gloss",
        f"German, {count} unique sentences, cold caches (nlp.pipe only)",
        f"{seconds:.2f} s ({count / seconds:.0f} sentences/s)",
        f"budget {BUDGET_S:.0f} s for {PHOENIX_SENTENCES}",
        seconds * PHOENIX_SENTENCES / count / BUDGET_S,
        "<= 1.0",
    )


if __name__ == "__main__":
    main()
