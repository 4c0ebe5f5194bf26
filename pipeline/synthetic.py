"""Small synthetic corpora in the exact official layouts, for the demo, tests and benchmarks.

Frames show a stylised signer (torso, head, two hands moving on smooth seeded paths), so
decoders, detectors and feature extractors see structured images rather than noise.
"""

from __future__ import annotations

import csv
import hashlib
import pickle
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

GERMAN = [
    "und nun die wettervorhersage für morgen donnerstag den zwölften august",
    "im süden regnet es zum teil kräftig",
    "morgen scheint im norden oft die sonne",
    "in der nacht bilden sich örtlich nebelfelder",
    "am wochenende wird es wieder wärmer",
    "der wind weht schwach bis mäßig aus west",
    "an den küsten gibt es stürmische böen",
    "die temperaturen liegen zwischen zwölf und zwanzig grad",
    "im osten bleibt es meist trocken",
    "später ziehen von westen her gewitter auf",
    "überschwemmungen drohen in den nächsten tagen",
    "am tag erreichen die werte achtzehn bis vierundzwanzig grad",
    "in den alpen fällt oberhalb von tausend metern schnee",
    "es bleibt wechselhaft mit schauern und sonne",
    "ab dem nachmittag lockert die bewölkung auf",
    "der hochdruck sorgt für ruhiges wetter",
]
CHINESE = [
    "我今天很高兴",
    "你叫什么名字",
    "明天下午三点我们去图书馆看书",
    "他的手机坏了",
    "这个苹果多少钱",
    "我每天早上跑步",
    "医院在学校的东边",
    "请帮我打电话给妈妈",
    "周末我们一起去公园",
    "我的朋友喜欢喝茶",
]
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SyntheticSample:
    name: str
    split: str
    num_frames: int
    translation: str
    gloss: str
    signer: str


def seeded_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from a stable hash (never Python's salted ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def default_samples(
    language: str, clips: int, frames: tuple[int, int], seed: int = 0
) -> list[SyntheticSample]:
    sentences = CHINESE if language == "zh" else GERMAN
    rng = seeded_rng("samples", language, seed)
    out = []
    for i in range(clips):
        text = sentences[i % len(sentences)]
        words = list(text) if language == "zh" else text.split()
        out.append(
            SyntheticSample(
                name=f"synth{i:05d}",
                split=SPLITS[0] if i % 5 < 3 else SPLITS[i % 5 - 2],
                num_frames=int(rng.integers(frames[0], frames[1] + 1)),
                translation=text,
                gloss=" ".join(w.upper() for w in words[:4]),
                signer=f"Signer{i % 3 + 1:02d}",
            )
        )
    return out


def samples_from_file(
    path: Path, clips: int | None = None, max_frames: int | None = None
) -> list[SyntheticSample]:
    """Sentences and frame counts from a ``name|num_frames|orth|translation`` file."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="|", quoting=csv.QUOTE_NONE))
    rows = rows[:clips] if clips else rows
    return [
        SyntheticSample(
            name=row["name"],
            split=SPLITS[0] if i % 5 < 3 else SPLITS[i % 5 - 2],
            num_frames=min(int(row["num_frames"]), max_frames or int(row["num_frames"])),
            translation=row["translation"],
            gloss=row["orth"],
            signer=f"Signer{i % 9 + 1:02d}",
        )
        for i, row in enumerate(rows)
    ]


def render_frames(num_frames: int, width: int, height: int, seed: object) -> Iterator[np.ndarray]:
    """RGB frames of a stylised signer whose hands move on smooth seeded paths."""
    rng = seeded_rng("frames", seed)
    background = np.array(rng.integers(40, 90, 3), dtype=np.uint8)
    phase = rng.uniform(0, 2 * np.pi, 4)
    speed = rng.uniform(0.08, 0.25, 4)
    for t in range(num_frames):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = background
        cx, unit = width // 2, min(width, height)
        cv2.rectangle(
            frame, (cx - unit // 4, height // 2), (cx + unit // 4, height), (30, 60, 140), -1
        )
        cv2.circle(frame, (cx, int(height * 0.3)), unit // 8, (205, 170, 140), -1)
        for hand in range(2):
            x = cx + (1 if hand else -1) * unit * (
                0.18 + 0.1 * np.sin(phase[hand] + speed[hand] * t)
            )
            y = height * (0.6 + 0.2 * np.sin(phase[hand + 2] + speed[hand + 2] * t))
            cv2.circle(frame, (int(x), int(y)), max(2, unit // 16), (225, 190, 160), -1)
        yield frame


def write_phoenix14t(
    out: Path, samples: Sequence[SyntheticSample], size: tuple[int, int] = (210, 260)
) -> Path:
    """A ``PHOENIX-2014-T-release-v3`` tree; returns the release folder (a valid ``--root``)."""
    release = out / "PHOENIX-2014-T-release-v3"
    base = release / "PHOENIX-2014-T"
    annotations = base / "annotations" / "manual"
    annotations.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        lines = ["name|video|start|end|speaker|orth|translation"]
        for s in (s for s in samples if s.split == split):
            lines.append(f"{s.name}|{s.name}/1/*.png|-1|-1|{s.signer}|{s.gloss}|{s.translation}")
            folder = base / "features/fullFrame-210x260px" / split / s.name
            _write_images(
                folder, render_frames(s.num_frames, *size, s.name), "images{:04d}.png", first=1
            )
        (annotations / f"PHOENIX-2014-T.{split}.corpus.csv").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )
    return release


def write_csl_daily(
    out: Path, samples: Sequence[SyntheticSample], size: tuple[int, int] = (512, 512)
) -> Path:
    """A CSL-Daily tree (label pickle, split file, JPEG folders); returns its root."""
    root = out / "CSL-Daily"
    labels = root / "sentence_label"
    labels.mkdir(parents=True, exist_ok=True)
    info = [
        {
            "name": s.name,
            "length": s.num_frames,
            "label_gloss": s.gloss.split(),
            "label_char": list(s.translation),
            "label_word": list(s.translation),
            "label_postag": ["n"] * len(s.translation),
            "signer": int(s.signer[-2:]),
        }
        for s in samples
    ]
    with open(labels / "csl2020ct_v2.pkl", "wb") as handle:
        pickle.dump(
            {"info": info, "gloss_map": sorted({g for s in samples for g in s.gloss.split()})},
            handle,
            protocol=4,
        )
    split_lines = ["name|split"] + [f"{s.name}|{s.split}" for s in samples]
    (labels / "split_1.txt").write_text("\n".join(split_lines) + "\n", encoding="utf-8")
    for s in samples:
        folder = root / "sentence" / "frames_512x512" / s.name
        _write_images(folder, render_frames(s.num_frames, *size, s.name), "{:06d}.jpg", first=0)
    return root


def write_generic(
    out: Path,
    samples: Sequence[SyntheticSample],
    language: str,
    size: tuple[int, int] = (160, 120),
    fps: float = 25.0,
) -> Path:
    """A folder of mp4 clips plus ``corpus.csv``; returns the CSV (a valid ``--root``)."""
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in samples:
        path = clips / f"{s.name}.mp4"
        write_video(path, render_frames(s.num_frames, *size, s.name), fps, size)
        rows.append(
            {
                "id": s.name,
                "path": f"clips/{path.name}",
                "text": s.translation,
                "language": language,
                "split": s.split,
                "gloss": s.gloss,
                "signer": s.signer,
            }
        )
    csv_path = out / "corpus.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def write_video(
    path: Path, frames: Iterator[np.ndarray], fps: float, size: tuple[int, int]
) -> None:
    """An MPEG-4 Part 2 mp4 through OpenCV's bundled FFmpeg (no system ffmpeg needed)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_h264(
    path: Path, frames: Iterator[np.ndarray], fps: Fraction | float, crf: int = 18
) -> Path:
    """An H.264 (yuv420p) mp4 through PyAV's bundled libx264, single-threaded so the bytes are
    the same on every run: the codec, container and frame rates of real downloaded corpora."""
    import av  # deferred: only writers of test and benchmark clips need it

    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        for number, frame in enumerate(frames):
            if number == 0:
                stream.height, stream.width = frame.shape[:2]
            packet_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(packet_frame))
        container.mux(stream.encode())
    return path


def _write_images(folder: Path, frames: Iterator[np.ndarray], pattern: str, first: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    params = (
        [cv2.IMWRITE_PNG_COMPRESSION, 3]
        if pattern.endswith(".png")
        else [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    for number, frame in enumerate(frames, start=first):
        cv2.imwrite(
            str(folder / pattern.format(number)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params
        )
