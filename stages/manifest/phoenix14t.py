"""RWTH-PHOENIX-Weather 2014 T as released (v3): '|'-separated corpus CSVs and PNG frame folders."""

from __future__ import annotations

from pathlib import Path

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from stages.manifest.annotations import decoded_lines
from stages.manifest.candidates import candidate, rejected

HEADER = ["name", "video", "start", "end", "speaker", "orth", "translation"]
SPLITS = ("train", "dev", "test")


def corpus_root(root: Path, descriptor: Descriptor) -> Path:
    """Accept the release folder or the ``PHOENIX-2014-T`` folder inside it."""
    annotations = Path(descriptor.layout["annotations"]).parent
    for base in (root, root / descriptor.layout["inner_folder"]):
        if (base / annotations).is_dir():
            return base
    raise PrepError(
        f"layout not recognised: no {annotations}/ under {root} or {root / descriptor.layout['inner_folder']}"
    )


def read_phoenix14t(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    """Candidates of every split present, in file order; returns (corpus root, candidates)."""
    base = corpus_root(root, descriptor)
    files = {s: base / descriptor.layout["annotations"].format(split=s) for s in SPLITS}
    present = {s: f for s, f in files.items() if f.is_file()}
    if not present:
        raise PrepError(
            f"layout not recognised: none of {', '.join(f.name for f in files.values())} found"
        )
    candidates = []
    for split, path in present.items():
        candidates.extend(_read_split(base, split, path, descriptor))
    return base, candidates


def _read_split(base: Path, split: str, path: Path, descriptor: Descriptor) -> list[dict]:
    lines = list(decoded_lines(path))
    if not lines or lines[0][1].strip().split("|") != HEADER:
        raise PrepError(f"{path.name}: expected header {'|'.join(HEADER)}")
    out = []
    for number, text, ok in lines[1:]:
        fields = text.split("|")
        name = fields[0].strip()
        where = f"{path.name} line {number}"
        if not ok:
            out.append(rejected(name, split, m.UNDECODABLE_TEXT, f"{where} is not valid UTF-8"))
        elif len(fields) != len(HEADER):
            out.append(
                rejected(
                    name, split, m.INVALID_FIELD, f"{where} has {len(fields)} fields, expected 7"
                )
            )
        else:
            row = dict(zip(HEADER, (f.strip() for f in fields)))
            out.append(
                candidate(
                    name,
                    split,
                    _frame_folder(base, split, name, descriptor),
                    row["translation"],
                    gloss=row["orth"] or None,
                    signer=row["speaker"] or None,
                    kind="frames",
                )
            )
    return out


def _frame_folder(base: Path, split: str, name: str, descriptor: Descriptor) -> str:
    """The release keeps frames directly in <name>/; the CSV's 'video' column says <name>/1/."""
    folder = descriptor.layout["frames"].format(split=split, name=name)
    if "/" not in name and ".." not in name and (base / folder / "1").is_dir():
        return f"{folder}/1"
    return folder
