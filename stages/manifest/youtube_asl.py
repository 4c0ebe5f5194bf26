"""YouTube-ASL as a user holds it: videos and caption files downloaded by id, one sample per caption.

The release is only a list of YouTube video ids; videos and their English captions are fetched
by the user (prep never downloads). Under ``--root``, anywhere: ``{yid}.mp4|.webm|.mkv`` and per
video one caption file, ``{yid}.json`` (youtube-transcript-api's raw data: a list of
``{text, start, duration}``) or ``{yid}.vtt`` / ``{yid}.<lang>.vtt`` (WebVTT, as yt-dlp saves
YouTube's captions). Each caption becomes the sample ``{yid}-{NNN}`` (its place in the file,
from 000) cut from its video by the caption's start and end in seconds. Videos go to ``train``
unless a ``splits.csv`` (``yid,split``) lies under the root.

A video that never arrived (captions without a video) costs its captions, each quarantined as
``video_unavailable``; nothing about one video stops the others.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from manifests import Descriptor
from pipeline import manifest as m
from pipeline.errors import PrepError
from stages.manifest.annotations import csv_rows
from stages.manifest.candidates import candidate, rejected
from stages.manifest.finder import FileIndex

# Quarantine reasons of the corpora that are downloaded piece by piece (WLASL, AUTSL use them too).

YID = r"[A-Za-z0-9_-]{11}"  # every YouTube video id: 11 characters of this alphabet
VIDEO_NAME = re.compile(rf"^({YID})\.(mp4|webm|mkv)$")
JSON_NAME = re.compile(rf"^({YID})\.json$")  # not {yid}.info.json (yt-dlp's metadata)
VTT_NAME = re.compile(rf"^({YID})(\.[A-Za-z0-9_-]+)?\.vtt$")  # {yid}.vtt, {yid}.en.vtt
SPLIT_NAMES = {"val": "dev", "validation": "dev"}


@dataclass(frozen=True)
class Caption:
    start: float
    end: float
    text: str
    problem: tuple[str, str] | None = None  # (reason, detail) when the caption is unusable


def read_youtube_asl(root: Path, descriptor: Descriptor) -> tuple[Path, list[dict]]:
    """Candidates of every downloaded video, ordered by video id then caption; base is ``root``."""
    layout = descriptor.layout
    index = FileIndex(root, suffixes=(".mp4", ".webm", ".mkv", ".json", ".vtt", ".csv"))
    videos: dict[str, list[Path]] = {}
    captions: dict[str, list[Path]] = {}
    for name in sorted(index.by_name):
        for pattern, found in ((VIDEO_NAME, videos), (JSON_NAME, captions), (VTT_NAME, captions)):
            match = pattern.match(name)
            if match:
                found.setdefault(match.group(1), []).append(index.get(name))
    if not videos and not captions:
        raise PrepError(
            f"layout not recognised: no {{yid}}.mp4/.webm/.mkv or caption file under {root}"
        )
    split_file = index.get(layout["splits"])
    splits = read_splits(split_file) if split_file else None
    out = []
    for yid in sorted(set(videos) | set(captions)):
        split = splits.get(yid, "") if splits is not None else "train"
        out.extend(_video_samples(yid, split, videos.get(yid, []), captions.get(yid, []), root))
    return root, out


def _video_samples(
    yid: str, split: str, videos: list[Path], caption_files: list[Path], root: Path
) -> list[dict]:
    video = videos[0].relative_to(root).as_posix() if len(videos) == 1 else None
    if not split:
        return [rejected(yid, "unassigned", m.UNKNOWN_SPLIT, "video not listed in splits.csv")]
    for what, files in (("caption files", caption_files), ("videos", videos)):
        if len(files) > 1:
            listed = " and ".join(p.relative_to(root).as_posix() for p in files)
            return [rejected(yid, split, m.AMBIGUOUS_FILES, f"two {what}: {listed}; keep one")]
    if not caption_files:
        detail = f"{videos[0].name} has no {yid}.json or {yid}*.vtt caption file"
        return [rejected(yid, split, m.NO_CAPTIONS, detail, video)]
    path = caption_files[0]
    parsed = json_captions(path) if path.suffix == ".json" else vtt_captions(path)
    if isinstance(parsed, tuple):
        return [rejected(yid, split, *parsed)]
    if not parsed:
        return [rejected(yid, split, m.NO_CAPTIONS, f"{path.name} holds no captions", video)]
    out = []
    for number, caption in enumerate(parsed):
        sample = f"{yid}-{number:03d}"
        if video is None:
            detail = f"no {yid}.mp4/.webm/.mkv under --root for {path.name} (not downloaded?)"
            out.append(rejected(sample, split, m.VIDEO_UNAVAILABLE, detail))
        elif caption.problem:
            out.append(rejected(sample, split, *caption.problem, video))
        else:
            out.append(
                candidate(sample, split, video, caption.text, start=caption.start, end=caption.end)
            )
    return out


def read_splits(path: Path) -> dict[str, str]:
    """``yid,split`` rows (a ``yid,split`` header is allowed); ``val`` is ``dev``. A malformed
    or contradictory row is an error: guessing a split could put test videos into training."""
    splits: dict[str, str] = {}
    for row, (number, fields, problem) in enumerate(csv_rows(path)):
        cells = [f.strip() for f in fields or []]
        if row == 0 and [c.lower() for c in cells] == ["yid", "split"]:
            continue
        if problem or len(cells) != 2 or not all(cells):
            raise PrepError(f"{path.name} line {number}: expected yid,split")
        yid, split = cells[0], SPLIT_NAMES.get(cells[1].lower(), cells[1].lower())
        if splits.setdefault(yid, split) != split:
            raise PrepError(f"{path.name} line {number}: {yid} is also in split {splits[yid]}")
    return splits


def json_captions(path: Path) -> list[Caption] | tuple[str, str]:
    """youtube-transcript-api's raw data; (reason, detail) when the file as a whole is unusable."""
    try:
        data = json.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except UnicodeDecodeError:
        return m.UNDECODABLE_TEXT, f"{path.name} is not valid UTF-8"
    except ValueError:
        return m.INVALID_FIELD, f"{path.name} is not valid JSON"
    if not isinstance(data, list):
        return m.INVALID_FIELD, f"{path.name} is not a list of {{text, start, duration}}"
    return [_json_caption(path.name, number, item) for number, item in enumerate(data)]


def _json_caption(name: str, number: int, item: object) -> Caption:
    where = f"{name} entry {number}"
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        return _bad(m.INVALID_FIELD, f"{where} has no text")
    start, duration = item.get("start"), item.get("duration")
    for field, value in (("start", start), ("duration", duration)):
        if not _number(value) or value < 0:
            return _bad(m.INVALID_FIELD, f"{where}: {field}={value!r} is invalid")
    if duration == 0:
        return _bad(m.INVALID_FIELD, f"{where}: duration 0, the caption is empty")
    return Caption(float(start), float(start + duration), _plain(item["text"]))


def _bad(reason: str, detail: str) -> Caption:
    return Caption(0.0, 0.0, "", (reason, detail))


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


CUE_TIME = r"((?:\d+:)?\d{2}:\d{2}\.\d{3})"
TIMING = re.compile(rf"^{CUE_TIME}[ \t]+-->[ \t]+{CUE_TIME}(?:[ \t].*)?$")
TAG = re.compile(r"<[^>]*>")  # <c>, <i>, <v Speaker>, <00:00:01.000>: markup, not words


def vtt_captions(path: Path) -> list[Caption] | tuple[str, str]:
    """The WebVTT subset YouTube and yt-dlp write: a ``WEBVTT`` header block (``Kind:``,
    ``Language:``), then cues of an optional identifier, a timing line (settings after it are
    ignored) and text lines; ``NOTE``, ``STYLE`` and ``REGION`` blocks are skipped. Tags are
    dropped and character references decoded; a cue's lines are one caption."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    lines = []
    for number, line in enumerate(re.split(rb"\r\n|\r|\n", raw), start=1):
        try:
            lines.append((number, line.decode("utf-8"), True))
        except UnicodeDecodeError:
            lines.append((number, line.decode("utf-8", errors="replace"), False))
    blocks = _blocks(lines)
    if not blocks or not re.match(r"^WEBVTT([ \t].*)?$", blocks[0][0][1]):
        return m.INVALID_FIELD, f"{path.name} does not start with WEBVTT"
    captions = []
    for block in blocks[1:]:
        if re.match(r"^(NOTE|STYLE|REGION)([ \t].*)?$", block[0][1]):
            continue
        captions.append(_cue(path.name, block))
    return captions


def _blocks(lines: list[tuple[int, str, bool]]) -> list[list[tuple[int, str, bool]]]:
    blocks: list[list[tuple[int, str, bool]]] = [[]]
    for entry in lines:
        if entry[1].strip():
            blocks[-1].append(entry)
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _cue(name: str, block: list[tuple[int, str, bool]]) -> Caption:
    timed = [i for i, (_, text, _) in enumerate(block[:2]) if "-->" in text]
    if not timed:
        return _bad(m.INVALID_FIELD, f"{name} line {block[0][0]}: no cue timing")
    number, timing, _ = block[timed[0]]
    match = TIMING.match(timing.strip())
    if not match:
        return _bad(m.INVALID_FIELD, f"{name} line {number}: bad cue timing")
    start, end = _seconds(match.group(1)), _seconds(match.group(2))
    payload = block[timed[0] + 1 :]
    if not all(ok for _, _, ok in payload):
        return _bad(m.UNDECODABLE_TEXT, f"{name} line {number}: invalid UTF-8")
    if end <= start:
        return _bad(m.INVALID_FIELD, f"{name} line {number}: end is not after start")
    text = " ".join(html.unescape(TAG.sub("", line)) for _, line, _ in payload)
    return Caption(start, end, _plain(text))


def _seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.split(":")]
    return sum(value * 60**power for power, value in enumerate(reversed(parts)))


def _plain(text: str) -> str:
    """Caption line breaks are layout, not content: whitespace runs become one space."""
    return " ".join(text.split())
