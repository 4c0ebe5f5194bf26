"""A small How2Sign release in its official layout: the re-aligned translation files, the full
videos and the sentence clips, with synthetic signing and the release's own naming.

The folders are those ``download_how2sign.sh`` unzips into (``How2Sign/video_level/<split>/
rgb_front/raw_videos``, ``How2Sign/sentence_level/<split>/rgb_front/raw_videos``, the re-aligned
files under ``sentence_level/<split>/text/en/raw_text/re_aligned``). A clip holds exactly the
frames of its sentence's re-aligned times, so a test can compare both ways of reading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline import synthetic

FPS = 24.0  # the release's frame rate
SIZE = (32, 24)
HEADER = (
    "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE"
)
ENGLISH = [
    "Hi, I'm going to show you how to tie a bowline knot.",
    "First, make a small loop in the standing part of the rope.",
    "Now the rabbit comes up through the hole.",
    "Keep the stick moving forward and back.",
    "That's all there is to it!",
    "Add a pinch of salt and stir it well.",
]


@dataclass(frozen=True)
class Sentence:
    """One row of a re-aligned file; ``split`` is the release's name (train, val, test)."""

    split: str
    video_id: str
    number: int
    start: float
    end: float
    text: str

    @property
    def video_name(self) -> str:
        return f"{self.video_id}-1-rgb_front"

    @property
    def name(self) -> str:
        return f"{self.video_id}_{self.number}-1-rgb_front"

    @property
    def frames(self) -> tuple[int, int]:
        """[first, stop) frame numbers of the sentence in its full video."""
        return round(self.start * FPS), round(self.end * FPS)

    def line(self) -> str:
        fields = (
            self.video_id,
            self.video_name,
            f"{self.video_id}_{self.number}",
            self.name,
            f"{self.start:.2f}",
            f"{self.end:.2f}",
            self.text,
        )
        return "\t".join(fields)


# video id -> (split, seconds); ids may start with '-' as YouTube ids do
VIDEOS = {
    "-fZc293MpJk": ("train", 3.0),
    "Ab_3xYz9Q0w": ("train", 2.5),
    "zz9Top-4Kq8": ("val", 2.0),
    "T3stVid_e0A": ("test", 2.0),
}


def sentences() -> list[Sentence]:
    """Two sentences per video, in file order, with times on whole frames."""
    spans = ((0.25, 1.25), (1.5, 2.0))
    out = []
    for video_id, (split, _) in VIDEOS.items():
        for number, (start, end) in enumerate(spans):
            text = ENGLISH[len(out) % len(ENGLISH)]
            out.append(Sentence(split, video_id, number, start, end, text))
    return out


def write_how2sign(out: Path, clips: bool = True, videos: bool = True) -> Path:
    """The release under ``out/How2Sign`` (its folder is a valid ``--root``)."""
    root = out / "How2Sign"
    rows = sentences()
    for video_id, (split, seconds) in VIDEOS.items():
        frames = list(synthetic.render_frames(round(seconds * FPS), *SIZE, video_id))
        if videos:
            folder = root / "video_level" / split / "rgb_front" / "raw_videos"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{video_id}-1-rgb_front.mp4"
            synthetic.write_video(folder / name, iter(frames), FPS, SIZE)
        for row in (r for r in rows if clips and r.video_id == video_id):
            folder = root / "sentence_level" / split / "rgb_front" / "raw_videos"
            folder.mkdir(parents=True, exist_ok=True)
            first, stop = row.frames
            synthetic.write_video(folder / f"{row.name}.mp4", iter(frames[first:stop]), FPS, SIZE)
    for split in ("train", "val", "test"):
        text = root / "sentence_level" / split / "text" / "en" / "raw_text" / "re_aligned"
        text.mkdir(parents=True, exist_ok=True)
        lines = [HEADER] + [r.line() for r in rows if r.split == split]
        (text / f"how2sign_realigned_{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def annotation_file(root: Path, split: str) -> Path:
    return (
        root
        / "sentence_level"
        / split
        / "text/en/raw_text/re_aligned"
        / f"how2sign_realigned_{split}.csv"
    )
