"""Recently read video files kept open, so that the next segment of the same long video does not
parse its header again.

Opening an mp4 reads its whole sample table: 4 ms for a 10-minute video, more than a tenth of
decoding a 5-s segment of it (``bench/segments.py``), and proportionally more for the hour-long
videos How2Sign and YouTube-ASL cut into sentences. A reader done with a file hands its
container back here; the next reader of the same file (same size and modification time, same
decoder threads) takes it and seeks, which flushes the decoder. Only readers that position by
seeking use it, so a reused container is never read from wherever the last one stopped.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

KEPT = 8  # idle containers per process: a few decode threads, each on its own long video


class OpenContainers:
    """An LRU of idle ``(container, stream)`` pairs by file and decoder settings."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._idle: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.RLock()  # a reader collected inside take/give gives back too
        self._pid = os.getpid()

    def take(self, path: Path, threads: int) -> tuple[Any, Any] | None:
        """An idle container of ``path`` (no longer idle), or None."""
        key = self._key(path, threads)
        with self._lock:
            self._forget_other_process()
            return self._idle.pop(key, None) if key else None

    def give(self, path: Path, threads: int, opened: tuple[Any, Any]) -> None:
        """Keep ``opened`` for the next reader of ``path``; the least recently used beyond
        :attr:`size` is closed."""
        key = self._key(path, threads)
        with self._lock:
            self._forget_other_process()
            if key is None or key in self._idle:
                opened[0].close()
                return
            self._idle[key] = opened
            while len(self._idle) > self.size:
                self._idle.popitem(last=False)[1][0].close()

    def clear(self) -> None:
        with self._lock:
            while self._idle:
                self._idle.popitem()[1][0].close()

    def _forget_other_process(self) -> None:
        """A forked worker shares its parent's file offsets: it never reads the parent's
        containers (they are dropped here, not closed, as the parent still owns them)."""
        if os.getpid() != self._pid:
            self._idle, self._pid = OrderedDict(), os.getpid()

    @staticmethod
    def _key(path: Path, threads: int) -> tuple | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return (str(path), stat.st_size, stat.st_mtime_ns, threads)


OPEN = OpenContainers()
