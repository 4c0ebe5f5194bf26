"""WLASL as its start kit leaves it: ``WLASL_v0.3.json`` and ``videos/{video_id}.mp4``.

Isolated signs: each instance is one sample whose id is its ``video_id``, whose ``gloss`` and
``translation`` are the class's gloss (an English word or phrase). The JSON's frame numbers
count from 1; ``frame_end`` -1 means to the end. They are frame numbers, never times: the start
kit's ``preprocess.py`` keeps ``frames[frame_start - 1 : frame_end]`` of the frames OpenCV
decodes, one after another, and never reads the JSON's ``fps``. How they apply depends on how
the start kit made the file: an instance from YouTube with a real end frame was cut out already,
so its file is the sample whole; every other file is the video as downloaded, and the frames
``frame_start``..``frame_end`` are the sample (the probe turns them into the seconds of those
frames' own timestamps). Many source links are dead: an instance without its video is
quarantined as ``video_unavailable``.
"""

from __future__ import annotations

import json
from pathlib import Path

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from pipeline.manifest import VIDEO_UNAVAILABLE
from stages.manifest.candidates import candidate, id_problem, rejected
from stages.manifest.finder import FileIndex

SPLITS = {"train": "train", "val": "dev", "test": "test"}


def read_wlasl(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    """Candidates of every instance, in the JSON's order; base is ``root``."""
    layout = descriptor.layout
    index = FileIndex(root, suffixes=(".mp4", ".json"))
    prefer_processed_copies(index, layout["download_folders"])
    path = index.require(layout["annotations"], "WLASL's index of glosses and instances")
    try:
        entries = json.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PrepError(f"{path.name} is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise PrepError(f"{path.name}: expected a list of {{gloss, instances}}")
    out = []
    for number, entry in enumerate(entries):
        out.extend(_entry(path.name, number, entry, index, root))
    return root, out


def prefer_processed_copies(index: FileIndex, download_folders: list[str]) -> None:
    """The start kit leaves byte-identical copies of a non-YouTube video in ``raw_videos/``,
    ``raw_videos_mp4/`` (scripts/swf2mp4.sh) and ``videos/`` (preprocess.py). Only the copies
    furthest along count: outside those folders, else in ``raw_videos_mp4/``. Two of those are
    still two, and looking the name up is then the finder's error naming both."""
    rank = {folder: i + 1 for i, folder in enumerate(download_folders)}  # 0: outside them
    for name, paths in index.by_name.items():
        if len(paths) > 1:
            best = min(rank.get(p.parent.name, 0) for p in paths)
            index.by_name[name] = [p for p in paths if rank.get(p.parent.name, 0) == best]


def _entry(name: str, number: int, entry: object, index: FileIndex, root: Path) -> list[dict]:
    where = f"{name} entry {number}"
    if not isinstance(entry, dict) or not isinstance(entry.get("instances"), list):
        return [rejected(f"entry{number}", "unassigned", m.INVALID_FIELD, f"{where} has no list")]
    gloss = entry.get("gloss")
    gloss = gloss.strip() if isinstance(gloss, str) else ""
    return [
        _instance(f"{where} instance {k}", f"entry{number}-instance{k}", gloss, inst, index, root)
        for k, inst in enumerate(entry["instances"])
    ]


def _instance(
    where: str, fallback_id: str, gloss: str, inst: object, index: FileIndex, root: Path
) -> dict:
    if not isinstance(inst, dict):
        return rejected(fallback_id, "unassigned", m.INVALID_FIELD, f"{where} is not an object")
    video_id = inst.get("video_id")
    if not isinstance(video_id, (str, int)) or isinstance(video_id, bool) or video_id == "":
        return rejected(fallback_id, "unassigned", m.MISSING_FIELD, f"{where} has no video_id")
    sample, split = str(video_id), inst.get("split")
    if not isinstance(split, str) or not split.strip():
        return rejected(sample, "unassigned", m.MISSING_FIELD, f"{where} has no split")
    split = SPLITS.get(split.strip(), split.strip())
    if not gloss:
        return rejected(sample, split, m.MISSING_FIELD, f"{where}: its entry has no gloss")
    frames = _frame_range(inst)
    if isinstance(frames, str):
        return rejected(sample, split, m.INVALID_FIELD, f"{where}: {frames}")
    problem = id_problem(sample)
    if problem:  # before the lookup: such a name is no file of the release
        return rejected(sample, split, m.UNSAFE_ID, problem)
    video = index.get(f"{sample}.mp4")
    if video is None:
        detail = f"no {sample}.mp4 under --root (dead link or not downloaded: {inst.get('url')})"
        return rejected(sample, split, VIDEO_UNAVAILABLE, detail)
    signer = inst.get("signer_id")
    return candidate(
        sample,
        split,
        video.relative_to(root).as_posix(),
        gloss,
        gloss=gloss,
        signer=None if signer is None else str(signer),
        frame_range=frames,
    )


def _frame_range(inst: dict) -> list[int | None] | None | str:
    """[first, stop) of the file's presented frames (from 0; stop None: to the end), None for
    the whole file, or a string saying what is wrong.

    ``preprocess.py`` (dxli94/WLASL start_kit/preprocess.py:86-87, 54) keeps
    ``frames[frame_start - 1 : frame_end]``; a YouTube instance whose ``frame_end`` is a real
    frame was cut to those frames into its file (l.89-99), any other is copied whole (l.89-91,
    105-116), and its frame numbers then count in that file.
    """
    first, last = inst.get("frame_start"), inst.get("frame_end")
    for field, value in (("frame_start", first), ("frame_end", last)):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{field}={value!r} is not a whole number"
    if first < 1 or (last != -1 and last < first):
        return f"frames {first}..{last} are not a range from 1 (frame_end -1: to the end)"
    url = inst.get("url") if isinstance(inst.get("url"), str) else ""
    if ("youtube" in url or "youtu.be" in url) and last > 1:
        return None  # preprocess.py cut frames frame_start..frame_end into the file itself
    if first == 1 and last == -1:
        return None
    return [first - 1, None if last == -1 else last]
