"""AUTSL as released: per-split label CSVs, the class list, and ``{sample}_color.mp4`` clips.

Isolated Turkish Sign Language signs, one clip per sample. A label row ``signer0_sample1,164``
(no header) names the sample and its class; ``SignList_ClassId_TR_EN.csv`` (``ClassId,TR,EN``)
names each class in Turkish and English. Which column becomes the text and which the gloss is
the descriptor's choice (``text_column``, ``gloss_column``); the depth clips are not read.
A labelled sample without its clip (an archive part not unpacked) is quarantined, not fatal.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.manifest import VIDEO_UNAVAILABLE
from stages.manifest.annotations import csv_rows
from stages.manifest.candidates import candidate, id_problem, rejected
from stages.manifest.finder import FileIndex

SIGNER = re.compile(r"^(signer\d+)_sample\d+$")


def read_autsl(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    """Candidates of every label file found, split by split in file order; base is ``root``."""
    layout = descriptor.layout
    index = FileIndex(root, suffixes=(".mp4", ".csv"))
    classes = read_classes(index.require(layout["classes"], "AUTSL's class names"), layout)
    label_files = _label_files(index, layout["labels"])
    if not label_files:
        names = ", ".join(p for patterns in layout["labels"].values() for p in patterns)
        raise PrepError(f"layout not recognised: none of {names} under {root}")
    out = []
    for split, path in label_files.items():
        out.extend(_read_labels(path, split, classes, index, layout["clip"], root))
    return root, out


def _label_files(index: FileIndex, patterns: dict[str, list[str]]) -> dict[str, Path]:
    """split -> its label file; two files for one split is the user's call, so an error."""
    found = {}
    for split, globs in patterns.items():
        paths = [
            index.get(n) for n in sorted(index.by_name) if any(fnmatch.fnmatch(n, g) for g in globs)
        ]
        if len(paths) > 1:
            listed = " and ".join(str(p.relative_to(index.root)) for p in paths)
            raise PrepError(f"two label files for split {split}: {listed}; keep one")
        if paths:
            found[split] = paths[0]
    return found


def read_classes(path: Path, layout: dict) -> dict[int, tuple[str, str] | tuple[None, str]]:
    """ClassId -> (text, gloss), or (None, why) for a class row that cannot be used."""
    rows = iter(csv_rows(path))
    header = next(rows, (0, None, None))[1]
    wanted = ["ClassId", layout["text_column"], layout["gloss_column"]]
    if header is None or any(c not in [h.strip() for h in header] for c in wanted):
        raise PrepError(f"{path.name}: expected a header with {', '.join(wanted)}")
    columns = [[h.strip() for h in header].index(c) for c in wanted]
    classes: dict[int, tuple[str, str] | tuple[None, str]] = {}
    for number, fields, problem in rows:
        cells = [(fields or [])[i].strip() if i < len(fields or []) else "" for i in columns]
        if not cells[0].isdigit():
            continue  # a row without a class id names no class a label could point at
        if problem == "undecodable":
            classes[int(cells[0])] = (None, f"{path.name} line {number} is not valid UTF-8")
        elif problem or not cells[1]:
            classes[int(cells[0])] = (None, f"{path.name} line {number} has no usable name")
        else:
            classes[int(cells[0])] = (cells[1], cells[2] or None)
    return classes


def _read_labels(
    path: Path, split: str, classes: dict, index: FileIndex, clip: str, root: Path
) -> list[dict]:
    out = []
    for row, (number, fields, problem) in enumerate(csv_rows(path)):
        cells = [f.strip() for f in fields or []]
        where = f"{path.name} line {number}"
        sample = cells[0] if cells and cells[0] else f"{path.stem}-line{number}"
        if row == 0 and len(cells) == 2 and not cells[1].isdigit():
            continue  # a header some copies add; the release has none
        if problem == "undecodable":
            out.append(rejected(sample, split, m.UNDECODABLE_TEXT, f"{where} is not valid UTF-8"))
        elif problem or len(cells) != 2 or not cells[1].isdigit():
            out.append(rejected(sample, split, m.INVALID_FIELD, f"{where} is not sample,class_id"))
        elif int(cells[1]) not in classes:
            detail = f"{where}: class {cells[1]} is not in the class list"
            out.append(rejected(sample, split, m.INVALID_FIELD, detail))
        elif classes[int(cells[1])][0] is None:
            out.append(rejected(sample, split, m.INVALID_FIELD, classes[int(cells[1])][1]))
        else:
            out.append(_sample(sample, split, classes[int(cells[1])], index, clip, root))
    return out


def _sample(sample: str, split: str, names: tuple, index: FileIndex, clip: str, root: Path) -> dict:
    problem = id_problem(sample)
    if problem:  # before the lookup: such a name is no file of the release
        return rejected(sample, split, m.UNSAFE_ID, problem)
    video = index.get(clip.format(sample=sample))
    if video is None:
        detail = f"no {clip.format(sample=sample)} under --root (an archive part not unpacked?)"
        return rejected(sample, split, VIDEO_UNAVAILABLE, detail)
    signer = SIGNER.match(sample)
    return candidate(
        sample,
        split,
        video.relative_to(root).as_posix(),
        names[0],
        gloss=names[1],
        signer=signer.group(1) if signer else None,
    )
