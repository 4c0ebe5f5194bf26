"""A small AUTSL release: the unpacked ``train/``, ``val/``, ``test/`` folders of colour and depth
clips, header-less label files, and the class list with Turkish and English names.

The names are synthetic in the release's shape (Turkish with its own letters, English beside);
clips are tiny and short, at the release's 30 fps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline import synthetic

FPS = 30.0
SIZE = (32, 32)
CLASSES = [
    (0, "abla", "sister"),
    (1, "acele", "hurry"),
    (2, "acıkmak", "hungry"),
    (3, "afiyet olsun", "enjoy your meal"),
    (4, "ağaç", "tree"),
]
LABEL_FILES = {
    "train": "train_labels.csv",
    "val": "validation_labels.csv",
    "test": "test_labels.csv",
}


@dataclass(frozen=True)
class Sample:
    name: str  # signer<N>_sample<M>
    split: str  # the release's folder: train, val or test
    class_id: int
    frames: int | None = 8  # None: labelled, but the clip is not there


def default_samples() -> list[Sample]:
    return [
        Sample("signer0_sample1", "train", 2),
        Sample("signer0_sample2", "train", 4, frames=6),
        Sample("signer1_sample5", "train", 3),
        Sample("signer3_sample7", "val", 1, frames=10),
        Sample("signer5_sample9", "test", 0),
        Sample("signer0_sample3", "train", 1, frames=None),  # clip missing
        Sample("signer1_sample6", "train", 226),  # a class the list does not have
    ]


def write_autsl(out: Path, samples: Sequence[Sample], extra_rows: Sequence[str] = ()) -> Path:
    """``out/AUTSL`` (a valid ``--root``); ``extra_rows`` are appended to the train labels."""
    root = out / "AUTSL"
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        rows = [f"{s.name},{s.class_id}" for s in samples if s.split == split]
        rows += list(extra_rows) if split == "train" else []
        (root / LABEL_FILES[split]).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    for s in (s for s in samples if s.frames is not None):
        for stream in ("color", "depth"):
            frames = synthetic.render_frames(s.frames, *SIZE, f"{s.name}-{stream}")
            synthetic.write_video(root / s.split / f"{s.name}_{stream}.mp4", frames, FPS, SIZE)
    lines = ["ClassId,TR,EN"] + [f"{i},{tr},{en}" for i, tr, en in CLASSES]
    (root / "SignList_ClassId_TR_EN.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
