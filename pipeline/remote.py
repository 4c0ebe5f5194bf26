"""Where the loader reads a prepared run from: a local folder, or ``https://``/``http://``,
``s3://``/``gs://`` (and any other fsspec protocol, through the ``remote`` extra) or
``pipe:COMMAND`` as webdataset spells it (the command prints a file to stdout; ``{path}`` in it
is replaced by the file's path under the run, e.g. ``pipe:curl -sf https://host/run/{path}``).

Remote reading is local reading with a cache in front (MosaicML Streaming's ``local``/``remote``
pair, litdata's cache): a shard is downloaded whole into the cache folder, its size and sha256
are checked against the index before any sample is read, and only then is it renamed into place,
so a dropped connection never yields part of a shard. A failed transfer is tried again from the
start with exponential backoff, a bounded number of times, then ends as one line. The cache is
bounded in bytes: the least recently used shards go first (a reader that still has one open
keeps reading it; POSIX unlinking leaves open files readable).
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import PrepError, ShardError
from pipeline.layout import Layout
from pipeline.shard_reader import checked_sha256, per_frame_fields, shard_file
from pipeline.shards import INDEX_NAME, read_index

log = logging.getLogger(__name__)

REMOTE_EXTRA = "pip install 'prep[remote]'"
CHUNK = 1 << 20
ROOM_WAIT_S = 2.0  # how long a needed shard waits for room in a full cache before passing it
TRANSIENT = (OSError, http.client.HTTPException, urllib.error.URLError, EOFError)


class TransferError(PrepError):
    """A download that kept failing after every retry."""


def is_remote(out: Path | str) -> bool:
    text = str(out)
    return text.startswith("pipe:") or ("://" in text and not text.startswith("file://"))


def open_root(
    out: Path | str,
    *,
    cache_dir: Path | str | None = None,
    cache_bytes: int = 20 * 10**9,
    retries: int = 5,
    checksums: bool = True,
):
    """The local or remote root of a prepared run (``out`` of ``prep run``)."""
    if not is_remote(out):
        return LocalRoot(Path(str(out).removeprefix("file://")), checksums=checksums)
    cache = Path(cache_dir) if cache_dir else default_cache(str(out))
    return RemoteRoot(str(out), cache, cache_bytes=cache_bytes, retries=retries)


def default_cache(url: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prep" / "shards"
    return base / hashlib.sha256(url.encode()).hexdigest()[:16]


class LocalRoot:
    """A prepared run on a local disk: shards are read in place, each one's sha256 checked the
    first time any process of this loader opens it (unless ``checksums=False``): loader workers
    leave a mark per checked shard in a private temporary folder, so one hash serves them all."""

    remote = False

    def __init__(self, path: Path, *, checksums: bool = True) -> None:
        self.path, self.checksums = path, checksums
        self.checked: set[Path] = set()
        self.marks = Path(tempfile.mkdtemp(prefix="prep-checked-")) if checksums else None
        if self.marks is not None:
            weakref.finalize(self, shutil.rmtree, self.marks, True)

    def __str__(self) -> str:
        return str(self.path)

    def read_index(self, split: str) -> dict[str, Any]:
        return read_index(Layout(self.path).shard_dir(split))

    def shard(
        self, split: str, entry: dict[str, Any], checksum: bool = True, wait: bool = True
    ) -> Path | None:
        """The shard's path, its sha256 checked first (None when ``wait`` is False and another
        thread or process is checking it)."""
        path = shard_file(Layout(self.path).shard_dir(split), entry)
        if checksum and self.checksums and path not in self.checked:
            if not self._check_once(path, entry, wait):
                return None
            self.checked.add(path)
        return path

    def _check_once(self, path: Path, entry: dict[str, Any], wait: bool) -> bool:
        mark = self.marks / hashlib.sha256(str(path).encode()).hexdigest()
        if mark.exists():
            return True
        with open(mark.with_suffix(".lock"), "w") as lock:
            if not locked(lock, wait):  # the others wait for this one's verdict
                return False
            if not mark.exists():
                checked_sha256(path, entry)
                mark.touch()
        return True


class RemoteRoot:
    """A prepared run behind a URL or a ``pipe:`` command, read through a bounded local cache."""

    remote = True

    def __init__(self, url: str, cache: Path, *, cache_bytes: int, retries: int) -> None:
        self.url, self.cache, self.cache_bytes, self.retries = url, cache, cache_bytes, retries
        if url.startswith("pipe:") and "{path}" not in url:
            raise PrepError(f"{url}: a pipe: root needs {{path}} where each file's path goes")

    def __str__(self) -> str:
        return self.url

    def read_index(self, split: str) -> dict[str, Any]:
        relative = f"shards/{split}/{INDEX_NAME}"
        data = self._with_retries(relative, lambda: self._fetch(relative, None))
        try:
            index = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ShardError(
                f"{self._address(relative)} is not a JSON shard index: {exc}"
            ) from None
        if not isinstance(index, dict) or not isinstance(index.get("shardlist"), list):
            raise ShardError(f"{self._address(relative)} has no shardlist: not a shard index")
        return index

    def read_summary(self, stage: str) -> dict[str, Any] | None:
        """A stage's ``summary.json`` (what lineage compares), or None where the stage has not
        run: HTTP 404, no such file, or (``pipe:``, which cannot tell) a failing command."""
        relative = f"{stage}/summary.json"

        def attempt() -> bytes | None:
            try:
                return self._fetch(relative, None)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                raise
            except FileNotFoundError:
                return None
            except OSError:
                if self.url.startswith("pipe:"):
                    return None
                raise

        data = self._with_retries(relative, attempt)
        try:
            return None if data is None else json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ShardError(f"{self._address(relative)} is not a JSON summary: {exc}") from None

    def shard(
        self, split: str, entry: dict[str, Any], checksum: bool = True, wait: bool = True
    ) -> Path | None:
        """The cached copy of a shard, downloaded and checked first when absent (always
        checked: ``checksum`` is for local roots). ``wait`` False (fetching ahead): None when
        another thread or process is downloading it, or when it would not fit the cache."""
        name = shard_file(Path(split), entry).name  # a plain file name, never a path
        target = self.cache / split / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(f".{name}.lock"), "w") as lock:
            if not locked(lock, wait):  # one download per shard across workers
                return None
            if target.is_file() and target.stat().st_size == entry.get("filesize"):
                os.utime(target)  # recently used
                return target
            size = int(entry.get("filesize") or 0)
            partial = target.with_name(f".{name}.{size}.part")  # counted while it grows
            if not self._room_for(partial, size, needed=wait):
                return None  # a fetch ahead that would not fit: the reader fetches it
            relative = f"shards/{split}/{name}"
            try:
                self._with_retries(relative, lambda: self._download(relative, partial, entry))
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, target)
        return target

    def _download(self, relative: str, partial: Path, entry: dict[str, Any]) -> None:
        digest = hashlib.sha256()
        with open(partial, "wb") as sink:
            self._fetch(relative, lambda chunk: (digest.update(chunk), sink.write(chunk)))
        size, expected = partial.stat().st_size, entry.get("filesize")
        if size != expected:
            raise EOFError(f"got {size} of {expected} bytes")
        if entry.get("sha256") and digest.hexdigest() != entry["sha256"]:
            partial.unlink()
            raise ShardError(
                f"{self._address(relative)}: sha256 {digest.hexdigest()[:16]}..., its index says "
                f"{str(entry['sha256'])[:16]}...: the shard was altered or replaced"
            )

    def _with_retries(self, relative: str, action: Callable[[], Any]) -> Any:
        """``action`` until it succeeds; transient failures again after 0.1, 0.2, 0.4 ... s."""
        for attempt in range(self.retries + 1):
            try:
                return action()
            except TRANSIENT as exc:
                last = exc
                if isinstance(exc, urllib.error.HTTPError) and exc.code in (403, 404, 410):
                    break  # not there: trying again will not help
                log.warning(
                    "%s: %s; try %d of %d",
                    self._address(relative),
                    exc,
                    attempt + 1,
                    self.retries + 1,
                )
                time.sleep(min(0.1 * 2**attempt, 5.0))
        raise TransferError(
            f"{self._address(relative)}: download failed after {attempt + 1} tries: "
            f"{str(last).splitlines()[0] if str(last) else type(last).__name__}"
        )

    def _address(self, relative: str) -> str:
        if self.url.startswith("pipe:"):
            return self.url.replace("{path}", relative)
        return f"{self.url.rstrip('/')}/{relative}"

    def _fetch(self, relative: str, sink: Callable[[bytes], Any] | None) -> bytes | None:
        """The file's bytes (``sink`` None) or stream them to ``sink``; short reads raise."""
        address = self._address(relative)
        if address.startswith("pipe:"):
            return _fetch_pipe(address[len("pipe:") :], relative, sink)
        if address.startswith(("http://", "https://")):
            return _fetch_http(address, sink)
        return _fetch_fsspec(address, sink)

    def _downloading(self) -> int:
        """Bytes that downloads in progress (other threads', other workers') will add; a part
        whose shard lock is free was left by a killed process and is removed."""
        total = 0
        for part in self.cache.rglob(".*.part"):
            shard_name = part.name[1:].rsplit(".", 2)[0]
            with open(part.with_name(f".{shard_name}.lock"), "w") as lock:
                if locked(lock, False):  # nobody downloads it
                    part.unlink(missing_ok=True)
                    continue
            total += _part_size(part)
        return total

    def _room_for(self, partial: Path, size: int, needed: bool) -> bool:
        """Room for ``size`` more bytes, then ``partial`` created (counted by the others from
        then on), under the cache's lock. A fetch ahead gives up at once when there is none; a
        shard a reader needs waits (up to ``ROOM_WAIT_S``) for downloads in progress and
        readers' locks to free some, then comes in anyway, past the bound."""
        if size > self.cache_bytes:
            raise PrepError(
                f"a {size}-byte shard does not fit the loader cache of {self.cache_bytes} "
                "bytes; raise cache_bytes"
            )
        waited_until = time.monotonic() + ROOM_WAIT_S
        while True:
            with open(self.cache / ".room.lock", "w") as room:  # one sizes the cache at a time
                locked(room, True)
                if self._make_room(size) or (needed and time.monotonic() > waited_until):
                    partial.touch()
                    return True
            if not needed:
                return False
            time.sleep(0.01)

    def _make_room(self, incoming: int) -> bool:
        """Evict least recently used shards (not those a reader holds) until ``incoming`` more
        bytes fit the bound, which downloads in progress count against; whether they fit."""
        downloading = self._downloading()  # first: a part renamed meanwhile counts twice, not 0
        sizes = {p: p.stat().st_size for p in self.cache.rglob("[!.]*") if p.is_file()}
        used = sum(sizes.values()) + downloading
        for oldest in sorted(sizes, key=lambda p: p.stat().st_mtime):
            if used + incoming <= self.cache_bytes:
                break
            if _evicted(oldest):
                used -= sizes[oldest]
        return used + incoming <= self.cache_bytes


def _evicted(shard: Path) -> bool:
    """``shard`` removed from the cache, unless a reader holds its lock (checking or fetching
    it right now)."""
    with open(shard.with_name(f".{shard.name}.lock"), "w") as lock:
        if not locked(lock, False):
            return False
        shard.unlink(missing_ok=True)
    return True


def _part_size(part: Path) -> int:
    """The full size a download in progress (``.<name>.<size>.part``) will have."""
    size = part.name[: -len(".part")].rpartition(".")[2]
    return int(size) if size.isdigit() else part.stat().st_size


def _stream(handle, sink: Callable[[bytes], Any] | None, expected: int | None) -> bytes | None:
    parts, got = [], 0
    while chunk := handle.read(CHUNK):
        got += len(chunk)
        sink(chunk) if sink is not None else parts.append(chunk)
    if expected is not None and got != expected:
        raise EOFError(f"connection dropped after {got} of {expected} bytes")
    return None if sink is not None else b"".join(parts)


def _fetch_http(address: str, sink) -> bytes | None:
    with urllib.request.urlopen(address, timeout=60) as response:
        length = response.headers.get("Content-Length")
        return _stream(response, sink, int(length) if length else None)


def _fetch_fsspec(address: str, sink) -> bytes | None:
    try:
        import fsspec
    except ImportError:
        raise PrepError(
            f"{address}: reading s3://, gs:// and the like needs fsspec: {REMOTE_EXTRA}"
        ) from None
    try:
        handle = fsspec.open(address, "rb").open()
    except (ImportError, ValueError) as exc:  # e.g. s3fs/gcsfs missing: fsspec says which
        raise PrepError(f"{address}: {exc}".splitlines()[0]) from None
    with handle:
        return _stream(handle, sink, getattr(handle, "size", None))


def _fetch_pipe(command: str, relative: str, sink) -> bytes | None:
    """webdataset's ``pipe:`` URL: run the command, its stdout is the file; a failed exit is a
    failed transfer."""
    words = command.replace("{path}", shlex.quote(relative))
    with subprocess.Popen(words, shell=True, stdout=subprocess.PIPE) as process:
        data = _stream(process.stdout, sink, None)
    if process.returncode != 0:
        raise OSError(f"pipe command exited with {process.returncode}")
    return data


def locked(handle, wait: bool) -> bool:
    """An exclusive lock on ``handle``: waited for, or only when free (``wait`` False)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def first_fields(root, split: str, entries: list[dict[str, Any]]) -> list[str]:
    """The per-frame fields of the first non-empty shard (see :func:`per_frame_fields`)."""
    for entry in entries:
        if entry.get("nsamples"):
            path = root.shard(split, entry, checksum=False)  # one json: no need to hash it all
            return per_frame_fields([str(path)], [entry])
    return []
