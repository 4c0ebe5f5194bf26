"""Writing the gzip pickles that several trainers read (their format, not ours: prep itself
never unpickles what it did not write with :mod:`pipeline.unpickle`).

A list is written as it streams: :class:`StreamedList` pickles as a plain ``list`` whose items
are appended from an iterator, and the pickler keeps no memo, so a split of features is never
held in memory at once; :class:`TorchTensor` gives tensors byte-stable pickles. ``gzip`` gets a fixed mtime and no file name: the same items always
give the same bytes.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.storage import atomic_file

PROTOCOL = 4


class StreamedList:
    """Pickles as ``list(items)`` without building the list."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple:
        return (list, (), None, iter(self.items))


class TorchTensor:
    """Pickles as ``torch.from_numpy(array)``: the trainer unpickles a tensor, and the bytes
    depend on the values only (torch's own pickling names each storage by its memory
    address, so the same features would give other bytes on every run)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    def __reduce__(self) -> tuple:
        import torch

        return (torch.from_numpy, (self.array,))


def write_gzip_pickle(path: Path, value: Any) -> Path:
    """``gzip(pickle(value))`` written atomically; a :class:`StreamedList` streams."""
    with atomic_file(path) as raw:
        with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as packed:
            pickler = pickle.Pickler(packed, protocol=PROTOCOL)
            pickler.fast = True  # no memo: streamed items are not kept alive
            pickler.dump(value)
    return path
