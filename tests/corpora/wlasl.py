"""A small WLASL start kit after its scripts ran: ``WLASL_v0.3.json`` and the video folders
``video_downloader.py``, ``scripts/swf2mp4.sh`` and ``preprocess.py`` leave, synthetic signing.

Every frame carries its number as the grey level of its top band (:func:`frame_number`), so a
test can read back exactly which frames of a file a segment selected. A YouTube instance with
a real end frame is stored cut, frames ``frame_start``..``frame_end`` only, as ``preprocess.py``
cuts it; every other video is stored whole, in ``videos/`` and as the download folders' copies.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pipeline import synthetic

FPS = 25.0  # the JSON's frame numbers count at 25 fps
SIZE = (48, 32)
BAND = 16  # rows of the frame-number band (one macroblock row: it survives compression)


@dataclass(frozen=True)
class Instance:
    gloss: str
    video_id: str
    split: str  # the release's names: train, val, test
    url: str
    frame_start: int
    frame_end: int
    frames: int | None  # frames of the source video; None: a dead link, never downloaded
    signer_id: int = 1

    @property
    def youtube(self) -> bool:
        return "youtube" in self.url or "youtu.be" in self.url

    def record(self) -> dict:
        return {
            "bbox": [0, 0, SIZE[0], SIZE[1]],
            "fps": 25,
            "frame_end": self.frame_end,
            "frame_start": self.frame_start,
            "instance_id": 0,
            "signer_id": self.signer_id,
            "source": "synthetic",
            "split": self.split,
            "url": self.url,
            "variation_id": 0,
            "video_id": self.video_id,
        }


def youtube(yid: str) -> str:
    return f"https://www.youtube.com/watch?v={yid}"


def default_instances() -> list[Instance]:
    """Each way a file relates to its frame numbers, plus one instance per trap."""
    site = "http://www.aslpro.com/main/b/{}.swf"
    return [
        Instance("book", "00001", "train", youtube("PPmQd2zWdP0"), 5, 12, 20),  # cut by preprocess
        Instance("book", "00002", "val", site.format("book"), 1, -1, 12, 2),  # whole video
        Instance("drink", "00003", "test", site.format("drink"), 3, 10, 16),  # a segment
        Instance("drink", "00004", "train", youtube("0UsjUE-TXns"), 1, -1, 10),  # whole video
        Instance("drink", "00005", "train", youtube("aGtIHKEdCds"), 4, -1, 10),  # from frame 4
        Instance("drink", "00006", "train", site.format("dead"), 1, -1, None),  # dead link
        Instance("drink", "00007", "train", site.format("bad"), 9, 3, 12),  # end before start
        Instance("drink", "00002", "test", site.format("again"), 1, -1, 12),  # id used twice
        Instance("thin", "00009", "train", site.format("thin"), 1, 40, 12),  # past the end
    ]


def frame_number(frame: np.ndarray) -> int:
    """The number :func:`stamped_frames` wrote into a (decoded) frame."""
    return round((float(frame[2 : BAND - 2].mean()) - 20) / 10)


def stamped_frames(numbers: Sequence[int], seed: object) -> Iterator[np.ndarray]:
    frames = list(synthetic.render_frames(max(numbers) + 1, *SIZE, seed))
    for number in numbers:
        frame = frames[number].copy()
        frame[:BAND] = 20 + 10 * number
        yield frame


def write_wlasl(out: Path, instances: Sequence[Instance]) -> Path:
    """``out/WLASL`` (a valid ``--root``): ``start_kit/WLASL_v0.3.json`` and the video folders."""
    kit = out / "WLASL" / "start_kit"
    for folder in ("raw_videos", "raw_videos_mp4", "videos"):
        (kit / folder).mkdir(parents=True, exist_ok=True)
    glosses: dict[str, list[dict]] = {}
    for inst in instances:
        glosses.setdefault(inst.gloss, []).append(inst.record())
        target = kit / "videos" / f"{inst.video_id}.mp4"
        if inst.frames is None or target.exists():
            continue
        if inst.youtube:  # the download is named by its YouTube id, never by video_id
            raw = kit / "raw_videos" / f"{inst.url[-11:]}.mp4"
            _write(raw, range(inst.frames), inst.video_id)
            shutil.copy(raw, kit / "raw_videos_mp4" / raw.name)
            if inst.frame_end > 1:  # preprocess.py keeps frames frame_start..frame_end only
                _write(target, range(inst.frame_start - 1, inst.frame_end), inst.video_id)
            else:
                shutil.copy(raw, target)
        else:  # three byte-identical copies, one per script
            _write(target, range(inst.frames), inst.video_id)
            for folder in ("raw_videos", "raw_videos_mp4"):
                shutil.copy(target, kit / folder / target.name)
    entries = [{"gloss": gloss, "instances": found} for gloss, found in glosses.items()]
    (kit / "WLASL_v0.3.json").write_text(json.dumps(entries, indent=4))
    return out / "WLASL"


def _write(path: Path, numbers: Sequence[int], seed: object) -> None:
    synthetic.write_video(path, stamped_frames(list(numbers), seed), FPS, SIZE)
