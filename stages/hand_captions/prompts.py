"""The captioning and refinement prompts, and the hash recorded with every caption they made.

``--prompt`` and ``--refine-prompt`` take a file path or the text itself; the default is
BeyondGloss's prompt, character for character: ``PRE_QUERY_PROMPT + DEFAULT_QUERY`` of
elsobhano/BeyondGloss ``sign_video_descriptor/describe_segments.py`` (l.33-44, joined with no
space at l.157: "...emotions shown.Describe only...").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.errors import PrepError

DEFAULT_PROMPT = (
    "This is a sign language video, and it's important to capture details such as hand gestures "
    "and hand trajectories accurately. Please identify and describe the specific motion in this "
    "video, including hand position, movement, trajectory and any relevant facial expressions or "
    "emotions shown."  # describe_segments.py l.157 adds the query with no space between
    "Describe only the motion and gestures of the person in the image focus on hands and face."
)
DEFAULT_REFINE_PROMPT = (
    "Below are descriptions of consecutive short segments of one sign language video, each behind "
    "its time span. Rewrite them as one concise description of the signing. Keep the hands, "
    "handshapes, hand positions and movements, and keep the time order and the time spans. Drop "
    "anything about the background, clothing, lighting or the person's appearance.\n\n{captions}"
)


def resolve_prompt(value: str | None, default: str, flag: str) -> str:
    """``None`` -> the default; an existing file -> its text; anything else is the prompt itself."""
    if value is None:
        return default
    path = Path(value).expanduser()
    try:
        is_file = len(value) < 4096 and path.is_file()
    except OSError:
        is_file = False
    text = path.read_text(encoding="utf-8") if is_file else value
    if not text.strip():
        raise PrepError(f"{flag} is empty")
    return text.strip()


def refine_request(template: str, joined_captions: str) -> str:
    """The refinement prompt with the joined captions in place of ``{captions}`` (or appended)."""
    if "{captions}" in template:
        return template.replace("{captions}", joined_captions)
    return f"{template}\n\n{joined_captions}"


def prompt_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
