"""FastText prototype vectors ``[V+1, 300]`` (row 0: the zero blank prototype).

Sources: the user's vectors (``.bin`` with subwords, or a ``.vec`` text file), or, offline, a
skipgram model trained on the corpus's own training sentences with one thread, which fastText
makes deterministic (its seed is fixed at 0 and not settable from Python).
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.errors import PrepError

DIM = 300
BUCKETS = 20000
# fastText's default rate first, three times: its "Encountered NaN" check can also fire
# spuriously (seen once in CI on a 3-sentence corpus, not reproducible), and a retry at the same
# rate gives the same vectors; lower rates only for real divergence on tiny corpora.
LEARNING_RATES = (
    0.05,
    0.05,
    0.05,
    0.01,
    0.001,
)  # fastText's default 2M buckets make a 2.4 GB model for a few thousand words


@dataclass(frozen=True)
class Prototypes:
    matrix: np.ndarray  # float32 [V+1, dim]
    source: str
    missing: int  # glosses without a vector (zero rows), only possible with .vec files


def prototypes_from_user_vectors(path: Path, glosses: Sequence[str]) -> Prototypes:
    if not path.is_file():
        raise PrepError(
            f"--fasttext file not found: {path} (give a cc.<lang>.300.bin or .vec file)"
        )
    if path.suffix == ".vec":
        vectors = read_vec(path, set(glosses))
        dim = len(next(iter(vectors.values()))) if vectors else DIM
        rows = [vectors.get(g, np.zeros(dim, np.float32)) for g in glosses]
        missing = sum(1 for g in glosses if g not in vectors)
        return Prototypes(_stack(rows, dim), f"user:{path.name}", missing)
    model = _load_model(path)
    rows = [model.get_word_vector(g) for g in glosses]
    return Prototypes(_stack(rows, model.get_dimension()), f"user:{path.name}", 0)


def prototypes_from_corpus(
    sentences: Iterable[Sequence[str]], glosses: Sequence[str], dim: int = DIM
) -> Prototypes:
    """Train skipgram vectors on the given token sequences (one thread: reproducible bytes).

    Training runs in a fresh child process: in a process that has already run other native
    libraries (MediaPipe's TFLite, torch) fastText was seen to report "Encountered NaN" on every
    attempt, while a clean process trains the same corpus to the same vectors every time.
    """
    with tempfile.TemporaryDirectory(prefix="prep-fasttext-") as tmp:
        corpus = Path(tmp) / "train.txt"
        corpus.write_text("\n".join(" ".join(s) for s in sentences if s) + "\n", encoding="utf-8")
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = pool.submit(trained_vectors, corpus, dim, list(glosses)).result()
    return Prototypes(
        _stack(list(rows), dim),
        f"fasttext-skipgram-trained-on-train(dim={dim},thread=1,bucket={BUCKETS})",
        0,
    )


def trained_vectors(corpus: Path, dim: int, glosses: list[str]) -> np.ndarray:
    """Child-process side: train, then return the glosses' vectors."""
    import fasttext

    model = _train(fasttext, corpus, dim)
    return (
        np.stack([model.get_word_vector(g) for g in glosses])
        if glosses
        else np.zeros((0, dim), np.float32)
    )


def _train(fasttext, corpus: Path, dim: int):
    """Skipgram training, retried on fastText's "Encountered NaN" with the rates above in order."""
    for rate in LEARNING_RATES:
        try:
            return fasttext.train_unsupervised(
                str(corpus),
                model="skipgram",
                dim=dim,
                thread=1,
                minCount=1,
                bucket=BUCKETS,
                lr=rate,
                verbose=0,
            )
        except RuntimeError as exc:
            if "NaN" not in str(exc):
                raise
    raise PrepError(
        "fastText training diverged on this training split; give vectors with --fasttext"
    )


def read_vec(path: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    vectors = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().split()
        dim = int(header[1]) if len(header) == 2 else len(header) - 1
        if len(header) != 2:
            handle.seek(0)
        for line in handle:
            parts = line.rstrip("\n").rsplit(" ", dim)
            if parts[0] in wanted and len(parts) == dim + 1:
                vectors[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
    return vectors


def _load_model(path: Path):
    import fasttext

    try:
        return fasttext.load_model(str(path))
    except ValueError as exc:
        raise PrepError(f"cannot load fastText model {path.name}: {exc}") from exc


def _stack(rows: list[np.ndarray], dim: int) -> np.ndarray:
    matrix = np.zeros((len(rows) + 1, dim), dtype=np.float32)
    if rows:
        matrix[1:] = np.stack(rows).astype(np.float32)
    return matrix
