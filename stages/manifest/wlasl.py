"""WLASL as its start kit leaves it: ``WLASL_v0.3.json`` and ``videos/{video_id}.mp4``.

Isolated signs: each instance is one sample whose id is its ``video_id``, whose ``gloss`` and
``translation`` are the class's gloss (an English word or phrase). The JSON's frame numbers
count from 1 at 25 fps; ``frame_end`` -1 means to the end. How they apply depends on how the
start kit made the file (``start_kit/preprocess.py``): an instance from YouTube with a real end
frame was cut out already, so its file is the sample whole; every other file is the video as
downloaded, and the frames ``frame_start``..``frame_end`` become a segment in seconds that
selects exactly those frames. Many source links are dead: an instance without its video is
quarantined as ``video_unavailable``.
"""

from __future__ import annotations

import json
import math
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
    segment = _segment(inst)
    if isinstance(segment, str):
        return rejected(sample, split, m.INVALID_FIELD, f"{where}: {segment}")
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
        start=segment[0],
        end=segment[1],
    )


def _segment(inst: dict) -> tuple[float | None, float | None] | str:
    """(start, end) in seconds, None for the file's own start or end; a string says what is wrong.

    Frame n (from 1) of the JSON's 25 fps decoding starts at (n - 1) / fps; the segment runs from
    frame_start's start to frame_end's end, so the manifest's nearest-frame rule
    (:func:`pipeline.video_common.segment_slice`) selects frames frame_start..frame_end.
    """
    first, last, fps = inst.get("frame_start"), inst.get("frame_end"), inst.get("fps")
    for field, value in (("frame_start", first), ("frame_end", last)):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{field}={value!r} is not a whole number"
    if first < 1 or (last != -1 and last < first):
        return f"frames {first}..{last} are not a range from 1 (frame_end -1: to the end)"
    url = inst.get("url") if isinstance(inst.get("url"), str) else ""
    if ("youtube" in url or "youtu.be" in url) and last > 1:
        return None, None  # preprocess.py cut frames frame_start..frame_end into the file itself
    if first == 1 and last == -1:
        return None, None
    low, high = m.FPS_RANGE
    number = isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps)
    if not number or not low <= fps <= high:
        return f"fps={fps!r} cannot time frames {first}..{last}"
    return (None if first == 1 else (first - 1) / fps), (None if last == -1 else last / fps)
