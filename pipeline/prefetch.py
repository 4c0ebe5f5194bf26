"""Fetching ahead: the shards a loader process reads next made ready in a thread (downloaded
into a remote run's cache, or a local shard's sha256 checked), so that fetching and hashing
overlap decoding."""

from __future__ import annotations

import threading


class Prefetcher:
    """Gets the shards a reader needs next ready in a thread (downloaded into the cache, or a
    local shard's sha256 checked), at most ``ahead`` shards past the one it reads, so fetching
    and hashing overlap decoding. A shard another worker is already fetching is skipped: that
    worker's download serves both. Errors are left for the reader to meet, in one line."""

    def __init__(self, root, split: str, entries: list, needed: list[int], ahead: int = 2):
        self.root, self.split, self.entries, self.needed = root, split, entries, needed
        self.place = {shard: i for i, shard in reversed(list(enumerate(needed)))}
        self.position, self.ahead, self.stopped = 0, ahead, False
        self.wake = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def reading(self, shard: int) -> None:
        with self.wake:
            self.position = max(self.position, self.place.get(shard, 0))
            self.wake.notify_all()

    def stop(self) -> None:
        with self.wake:
            self.stopped = True
            self.wake.notify_all()

    def _run(self) -> None:
        for number, shard in enumerate(self.needed):
            with self.wake:
                self.wake.wait_for(lambda n=number: self.stopped or n <= self.position + self.ahead)
                if self.stopped:
                    return
            try:
                self.root.shard(self.split, self.entries[shard], wait=False)
            except Exception:  # noqa: BLE001 (the reader meets it again and says it in one line)
                return
