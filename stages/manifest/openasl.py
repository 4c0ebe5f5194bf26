"""OpenASL as released: ``openasl-v1.0.tsv`` (one row per sentence) and the videos its scripts
make, found by name anywhere under ``--root``; ``bbox-v1.0.json`` is optional.

A row's sample is its clip ``{vid}.mp4`` (what ``prep/crop_video.py`` writes: already cut and
cropped to the signer), or else the downloaded YouTube video ``{yid}.mp4`` cut by the row's
``start``/``end``: the frames presented in [start, end), what chevalierNoir/OpenASL
``prep/crop_video.py:75`` keeps with ``ffmpeg -ss start -to end -i {yid}.mp4``
(:func:`pipeline.video_common.segment_slice`). That command re-encodes at the source's nominal
frame rate, so on a variable-frame-rate download its clip may repeat or drop frames that the cut
here keeps as presented. Only a sample cut from the full video carries the signer box of
``bbox-v1.0.json``, as ``crop`` = [x0, y0, x1, y1] in fractions of the frame's width and height
(the clip has had it applied). A row with neither video is quarantined as ``video_unavailable``.

A ``vid`` (``{yid}-{HH:MM:SS.mmm}-{HH:MM:SS.mmm}``) holds colons, which ids may not: the id writes
each colon of the two times as a dot (:func:`sample_id`), and :func:`vid_of` reverses that; the
manifest keeps the ``vid`` verbatim in ``source_id``. The release's ``valid`` split is ``dev``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from stages.manifest.candidates import UNASSIGNED_SPLIT, candidate, rejected
from stages.manifest.finder import FileIndex
from stages.manifest.how2sign import segment_times, tab_records

COLUMNS = ("vid", "yid", "start", "end", "raw-text", "tokenized-text", "gloss", "split")
_YID = r"(?P<yid>[A-Za-z0-9_-]+)"
VID = re.compile(rf"^{_YID}-(?P<start>\d\d:\d\d:\d\d\.\d{{3}})-(?P<end>\d\d:\d\d:\d\d\.\d{{3}})$")
SAFE_VID = re.compile(
    rf"^{_YID}-(?P<start>\d\d\.\d\d\.\d\d\.\d{{3}})-(?P<end>\d\d\.\d\d\.\d\d\.\d{{3}})$"
)


def sample_id(vid: str) -> str:
    """The manifest id of a ``vid``: each colon of its two times becomes a dot
    (``abc-00:00:14.100-00:00:17.266`` -> ``abc-00.00.14.100-00.00.17.266``). A ``vid`` of
    another shape is its own id (the candidate checks then judge it)."""
    match = VID.match(vid)
    if match is None:
        return vid
    times = (match[t].replace(":", ".") for t in ("start", "end"))
    return "-".join((match["yid"], *times))


def vid_of(sample: str) -> str:
    """The ``vid`` a manifest id was made from: the reverse of :func:`sample_id`."""
    match = SAFE_VID.match(sample)
    if match is None:
        return sample
    times = (match[t].replace(".", ":", 2) for t in ("start", "end"))
    return "-".join((match["yid"], *times))


def read_openasl(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    """Candidates of every row of the annotation file, in file order; ``source_path`` values are
    relative to ``root``."""
    layout = descriptor.layout
    index = FileIndex(root, suffixes=(".tsv", ".json", ".mp4"))
    annotations = index.require(layout["annotations"], "the OpenASL annotation file")
    boxes = _boxes(index.get(layout["boxes"]))
    splits = layout["splits"]
    return root, [
        _candidate(index, root, splits, boxes, where, record, problem)
        for where, record, problem in tab_records(annotations, COLUMNS)
    ]


def _boxes(path: Path | None) -> dict:
    """``vid`` -> signer box, or nothing without the file (it only refines full-video samples)."""
    if path is None:
        return {}
    try:
        boxes = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PrepError(f"{path.name} is not readable JSON: {exc}") from exc
    if not isinstance(boxes, dict):
        raise PrepError(f"{path.name}: expected an object of vid -> [x0, y0, x1, y1]")
    return boxes


def _candidate(
    index: FileIndex,
    root: Path,
    splits: dict[str, str],
    boxes: dict,
    where: str,
    record: dict[str, str],
    problem: list[str] | None,
) -> dict:
    vid = record.get("vid", "").strip()
    sample = sample_id(vid)
    raw_split = record.get("split", "").strip()
    split = splits.get(raw_split, UNASSIGNED_SPLIT)
    if problem:
        return rejected(sample, split, *problem)
    if not vid:
        return rejected(sample, split, m.MISSING_FIELD, f"{where} has no vid")
    if raw_split not in splits:
        detail = f"{where}: split {raw_split!r} is none of {', '.join(splits)}"
        return rejected(sample, split, m.UNKNOWN_SPLIT, detail)
    if SAFE_VID.match(vid):  # it would read back as another vid: the mapping must stay one-to-one
        detail = f"{where}: vid {vid!r} has dots where the release writes colons"
        return rejected(sample, split, m.UNSAFE_ID, detail)
    extra = {
        "gloss": record["gloss"].strip() or None,
        "source_id": vid if sample != vid else None,
    }
    text = record["raw-text"]
    clip = _clip(index, vid, sample)
    if clip is not None:
        return candidate(sample, split, index.relative(clip, root), text, **extra)
    yid = record["yid"].strip()
    video = index.get(f"{yid}.mp4") if yid else None
    if video is None:
        detail = f"{where}: neither {vid}.mp4 nor {yid}.mp4 is under --root"
        return rejected(sample, split, m.VIDEO_UNAVAILABLE, detail)
    times = segment_times(record["start"], record["end"], clock_seconds, "HH:MM:SS.mmm")
    if isinstance(times, str):
        return rejected(sample, split, m.INVALID_FIELD, f"{where}: {times}")
    crop = boxes.get(vid)
    box_problem = None if crop is None else _box_problem(crop)
    if box_problem:
        detail = f"{where}: bbox of {vid} {box_problem}"
        return rejected(sample, split, m.INVALID_FIELD, detail)
    source = index.relative(video, root)
    start, end = times
    return candidate(sample, split, source, text, start=start, end=end, crop=crop, **extra)


def _clip(index: FileIndex, vid: str, sample: str) -> Path | None:
    """The clip of ``vid`` by its official name, or by one without colons (the manifest id, or
    colons as ``_`` or ``-``, as copies on filesystems without colons name them). Two of these
    names for one clip is an error, like any name found twice."""
    names = dict.fromkeys(
        f"{n}.mp4" for n in (vid, sample, vid.replace(":", "_"), vid.replace(":", "-"))
    )
    found = [path for name in names if (path := index.get(name)) is not None]
    if len(found) > 1:
        listed = " and ".join(str(p.relative_to(index.root)) for p in found[:2])
        raise PrepError(f"the clip of {vid} is under --root twice ({listed}); keep one")
    return found[0] if found else None


def clock_seconds(text: str) -> float:
    """``HH:MM:SS.mmm`` (or ``MM:SS.mmm``, or seconds) as seconds; ValueError otherwise."""
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError(text)
    return sum(float(part) * 60**power for power, part in enumerate(reversed(parts)))


def _box_problem(box: object) -> str | None:
    """Why a signer box cannot crop: it must be four finite numbers with x0 < x1 and y0 < y1.
    It may reach past the frame: the official crop pads with black there (crop_video.py)."""
    if not isinstance(box, list) or len(box) != 4:
        return "is not [x0, y0, x1, y1]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return "has a value that is not a number"
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box) or not (x0 < x1 and y0 < y1):
        return f"{box} does not have x0 < x1 and y0 < y1"
    return None
