"""MediaPipe's native log lines kept off the terminal: its C++ (absl, TF Lite) writes them
straight to file descriptor 2, over the progress bars. Only the ``prep`` process filters them
(``main``); ``prep --debug`` shows them."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

NATIVE_LOG_PREFIXES = (
    "W0000 ",
    "I0000 ",
    "E0000 ",
    "INFO: Created TensorFlow Lite",
    "WARNING: All log messages before absl::InitializeLog()",
)


def filter_native_stderr() -> None:
    """Drop the lines MediaPipe's C++ (absl, TF Lite) writes straight to file descriptor 2
    ("W0000 ... Feedback manager requires ...") from any thread, at any time, over the progress
    bars; everything else passes through as written. For the ``prep`` process only (``main``),
    not for prep used as a library; ``prep --debug`` calls it off before anything is written."""
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [kept_part(line) for line in lines]
            if pending and not any(
                p.encode().startswith(pending.lstrip(b"\r")[: len(p)]) for p in NATIVE_LOG_PREFIXES
            ):
                kept.append(pending)  # a progress bar's line without its newline yet
                pending = b""
            if kept:
                os.write(saved, b"".join(kept))
        if pending:
            os.write(saved, pending)

    thread = threading.Thread(target=forward, name="prep-stderr-filter", daemon=True)
    thread.start()
    NATIVE_FILTER.update(saved=saved, thread=thread)
    atexit.register(unfilter_native_stderr)  # the last lines (an error, "stopped") still get out


NATIVE_FILTER: dict[str, Any] = {}
NATIVE_PREFIXES_BYTES = tuple(p.encode() for p in NATIVE_LOG_PREFIXES)


def kept_part(line: bytes) -> bytes:
    """A line of stderr without the native log message in it: a progress bar's text that a
    message was written after (no newline between them) stays, the message goes."""
    cut = min((i for p in NATIVE_PREFIXES_BYTES if (i := line.find(p)) >= 0), default=-1)
    if cut < 0:
        return line + b"\n"
    return line[:cut].rstrip(b"\r") if line[:cut].strip(b"\r") else b""


def unfilter_native_stderr() -> None:
    """Give file descriptor 2 back its own stream, after what the filter holds is written
    (at exit, and for ``prep --debug``, which shows native logs)."""
    saved = NATIVE_FILTER.pop("saved", None)
    if saved is None:
        return
    sys.stderr.flush()
    os.dup2(saved, 2)  # closes our copy of the pipe's write end: the filter reads to its end
    NATIVE_FILTER.pop("thread").join(timeout=2)
