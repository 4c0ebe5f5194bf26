"""The captioning and refinement prompts, and the hash recorded with every caption they made.

``--prompt`` and ``--refine-prompt`` take a file path or the text itself; the default is
BeyondGloss's prompt, character for character: ``PRE_QUERY_PROMPT + DEFAULT_QUERY`` of
elsobhano/BeyondGloss ``sign_video_descriptor/describe_segments.py`` (l.33-44, joined with no
space at l.157: "...emotions shown.Describe only..."). ``--refine-prompt`` also takes a preset
name (:data:`REFINE_PRESETS`): ``beyondgloss`` is that repository's refinement request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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


# elsobhano/BeyondGloss (11eed23) sign_video_descriptor/refine.py l.24-36, character for
# character (a triple-quoted string: every line ends in a newline, the last one too); l.44 fills
# ``{paragraph}`` with ``str.format`` and l.43 sends BEYONDGLOSS_REFINE_SYSTEM before it.
BEYONDGLOSS_REFINE_PROMPT = (
    "The following paragraph is the description of consecutive parts of a video.\n"
    "Relevant information are hands movements, handshapes, hands states, body movements, body "
    "parts and gestures.\n"
    "Anything else is irrelevant like people, backgrounds, colours and facial expression.\n"
    "Please remove any irrelevant information from the paragraph and give us the refined output "
    "in just one sentence.\n"
    'Do not put such phrases like "suggesting a different sign language gesture","sign language" '
    "or anything else without a direct relation with state of hands.\n"
    "Do not add something based on your conclusion, just stick to the paragraph.\n"
    "Do not change the temporal order of our favourite information.\n"
    "Do not start your sentence with any information about person in the video.\n"
    "Avoid paraphrasing as much as it is possible.\n"
    'Do not add anything to your response like: "OUTPUT: ".\n'
    "\n"
    'Paragraph: "{paragraph}"\n'
)
BEYONDGLOSS_REFINE_SYSTEM = "You are a helpful assistant."  # refine.py l.43
PLACEHOLDERS = ("{captions}", "{paragraph}")  # where the joined description goes


@dataclass(frozen=True)
class RefinePrompt:
    """A refinement request template and the system message sent before it (None: none)."""

    template: str
    system: str | None = None


REFINE_PRESETS = {
    "beyondgloss": RefinePrompt(BEYONDGLOSS_REFINE_PROMPT, BEYONDGLOSS_REFINE_SYSTEM),
}


def resolve_refine_prompt(value: str | None) -> RefinePrompt:
    """A preset by name (kept exactly, trailing newline included), else as :func:`resolve_prompt`."""
    if value is not None and value.strip().lower() in REFINE_PRESETS:
        return REFINE_PRESETS[value.strip().lower()]
    return RefinePrompt(resolve_prompt(value, DEFAULT_REFINE_PROMPT, "--refine-prompt"))


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
    """The refinement prompt with the joined captions in place of ``{captions}`` or
    ``{paragraph}`` (BeyondGloss's name), or appended after a blank line. Plain replacement, not
    ``str.format``: a user's prompt may hold other braces."""
    for marker in PLACEHOLDERS:
        if marker in template:
            return template.replace(marker, joined_captions)
    return f"{template}\n\n{joined_captions}"


def prompt_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
