"""A small YouTube-ASL download: videos and caption files as the tools users fetch them with
leave them, with synthetic signing.

The release is only a list of video ids, so the layout is the download tools': yt-dlp writes
``{yid}.{ext}`` and ``{yid}.{lang}.vtt``, youtube-transcript-api's ``JSONFormatter`` a list of
``{text, start, duration}``. Videos and captions lie in different folders, as downloads often do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2

from pipeline import synthetic

FPS = 10.0
SIZE = (32, 24)


@dataclass(frozen=True)
class Cue:
    start: float
    duration: float
    text: str


@dataclass(frozen=True)
class Video:
    """One downloaded (or not) video; ``seconds`` None: the video never arrived."""

    yid: str
    seconds: float | None
    cues: tuple[Cue, ...] = ()
    captions: str | None = "json"  # json, vtt (as {yid}.en.vtt), both, or None
    container: str = "mp4"  # mp4, webm or mkv


def default_videos() -> list[Video]:
    """Good captions in every format and container, plus one video per download trap."""
    return [
        Video(
            "-fZc293MpJk",
            3.0,
            (
                Cue(0.0, 1.0, "Hello, my name is Sam."),
                Cue(1.0, 1.5, "I teach\nASL  online."),
                Cue(2.5, 0.5, "  "),  # an empty caption
                Cue(9.0, 1.0, "Past the end of the video."),
            ),
        ),
        Video(
            "Ab_3xYz9Q0w",
            3.0,
            (Cue(0.5, 1.5, "<c>Thanks</c> &amp; welcome"), Cue(2.0, 0.8, "Bye for now")),
            captions="vtt",
            container="webm",
        ),
        Video(
            "zz9Top-4Kq8",
            2.0,
            (Cue(0.2, 0.0, "No time on screen"), Cue(0.4, 1.2, "See you soon.")),
            container="mkv",
        ),
        Video("NoVideo_000", None, (Cue(0.0, 1.0, "Gone"), Cue(1.0, 1.0, "Also gone"))),
        Video("NoCaption00", 1.0, captions=None),
        Video("TwoCaptions", 1.0, (Cue(0.0, 0.5, "Which one?"),), captions="both"),
    ]


def transcript_json(cues: Sequence[Cue]) -> str:
    """What youtube-transcript-api's JSONFormatter writes for a fetched transcript."""
    return json.dumps([{"text": c.text, "start": c.start, "duration": c.duration} for c in cues])


def webvtt(cues: Sequence[Cue]) -> str:
    """YouTube's WebVTT as yt-dlp saves it, with a note, a cue identifier, cue settings and a
    timestamp without hours, which the format allows."""
    blocks = ["WEBVTT\nKind: captions\nLanguage: en", "NOTE written by tests/corpora"]
    for number, cue in enumerate(cues):
        start, end = _stamp(cue.start, hours=number > 0), _stamp(cue.start + cue.duration)
        ident = f"cue-{number}\n" if number == 0 else ""
        blocks.append(f"{ident}{start} --> {end} align:start position:0%\n{cue.text}")
    return "\n\n".join(blocks) + "\n"


def _stamp(seconds: float, hours: bool = True) -> str:
    millis = round(seconds * 1000)
    h, rest = divmod(millis, 3_600_000)
    mins, rest = divmod(rest, 60_000)
    text = f"{mins:02d}:{rest // 1000:02d}.{rest % 1000:03d}"
    return f"{h:02d}:{text}" if hours else text


def write_youtube_asl(
    out: Path, videos: Sequence[Video], splits: dict[str, str] | None = None
) -> Path:
    """``out/youtube-asl`` (a valid ``--root``): ``videos/``, ``captions/``, optional splits.csv."""
    root = out / "youtube-asl"
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "captions").mkdir(parents=True, exist_ok=True)
    for video in videos:
        if video.seconds is not None:
            write_clip(root / "videos" / f"{video.yid}.{video.container}", video)
            # yt-dlp's metadata beside the video: a .json the reader must not take for captions
            (root / "videos" / f"{video.yid}.info.json").write_text('{"id": "x"}')
        if video.captions in ("json", "both"):
            (root / "captions" / f"{video.yid}.json").write_text(transcript_json(video.cues))
        if video.captions in ("vtt", "both"):
            (root / "captions" / f"{video.yid}.en.vtt").write_text(webvtt(video.cues))
    if splits is not None:
        lines = ["yid,split"] + [f"{yid},{split}" for yid, split in splits.items()]
        (root / "splits.csv").write_text("\n".join(lines) + "\n")
    return root


def write_clip(path: Path, video: Video) -> None:
    frames = synthetic.render_frames(round(video.seconds * FPS), *SIZE, video.yid)
    if path.suffix == ".webm":  # VP9, as YouTube serves most videos
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP90"), FPS, SIZE)
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    else:
        synthetic.write_video(path, frames, FPS, SIZE)
