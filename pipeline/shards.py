"""WebDataset tar shards: a deterministic writer that rolls over at a size bound, per-field
statistics, and the per-split index (wids-compatible, plus checksums).

A sample is a key plus ``{field: bytes}``; fields are named by their extension (``json``,
``dinov2.npy``, ``frame_00012.jpg``). Whoever adds a field just adds an entry to that dict,
so a new feature never touches this module. Tar members carry fixed owner, mode and mtime,
so the same samples always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pipeline.errors import PrepError, ShardError

FIXED_MTIME = 946684800  # 2000-01-01: any constant works; a real date keeps tools quiet
MEMBER_MODE = 0o444
WIDS_KIND = "wids-shard-index-v1"
INDEX_NAME = "index.json"


def sample_key(sample_id: str) -> str:
    """The shard key of a sample id: WebDataset cuts keys at the first dot, so dots are escaped."""
    if not sample_id or "/" in sample_id:
        raise PrepError(f"sample id {sample_id!r} cannot be a shard key")
    return sample_id.replace("%", "%25").replace(".", "%2E")


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


_SIMPLE_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|][a-z]\d+)', 'fortran_order': False, 'shape': \(((?:\d+, ?)*\d*)\), \}"
)


def decode_npy(data: bytes | memoryview) -> np.ndarray:
    """An ``.npy`` payload as an array, never unpickling. The plain C-order headers that
    :func:`encode_npy` writes are parsed directly (np.load's literal_eval costs as much as the
    copy for small arrays); anything else goes through ``np.load(allow_pickle=False)``."""
    if bytes(data[:8]) == b"\x93NUMPY\x01\x00":
        header_len = int.from_bytes(data[8:10], "little")
        match = _SIMPLE_NPY_HEADER.match(bytes(data[10 : 10 + header_len]))
        if match:
            shape = tuple(int(x) for x in match.group(2).split(b",") if x.strip())
            return np.frombuffer(
                data, np.dtype(match.group(1).decode()), offset=10 + header_len
            ).reshape(shape)
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_json(value: Any) -> bytes:
    return (
        json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    ).encode()


@dataclass
class FieldStats:
    """Running statistics of one field over a shard (float moments for ``.npy`` arrays)."""

    samples: int = 0
    bytes: int = 0
    rows: int = 0
    values: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    nan: int = 0
    inf: int = 0
    shape_tail: list[int] | None = None

    def add(self, data: bytes, array: np.ndarray | None) -> None:
        self.samples += 1
        self.bytes += len(data)
        if array is None or array.dtype.kind not in "fiu":
            return
        values = array.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        self.nan += int(np.isnan(values).sum())
        self.inf += int(np.isinf(values).sum())
        self.rows += int(array.shape[0]) if array.ndim else 1
        self.values += int(finite.sum())
        self.total += float(values[finite].sum())
        self.total_sq += float(np.square(values[finite]).sum())
        self.shape_tail = list(array.shape[1:])

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.samples, "bytes": self.bytes}
        if self.shape_tail is not None:
            mean = self.total / self.values if self.values else 0.0
            var = max(self.total_sq / self.values - mean * mean, 0.0) if self.values else 0.0
            out.update(
                {
                    "rows": self.rows,
                    "shape_tail": self.shape_tail,
                    "mean": round(mean, 6),
                    "std": round(var**0.5, 6),
                    "nan": self.nan,
                    "inf": self.inf,
                }
            )
        return out


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through (tar bytes hashed once)."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._handle.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


@dataclass
class ShardInfo:
    path: Path
    samples: int = 0
    bytes: int = 0
    sha256: str = ""
    fields: dict[str, FieldStats] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.path.name,
            "samples": self.samples,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "fields": {k: v.as_dict() for k, v in sorted(self.fields.items())},
            "keys": self.keys,
        }


class ShardWriter:
    """Writes samples into ``<folder>/<prefix>-NN.tar``, starting a new tar past ``max_bytes``.

    Use as a context manager; :attr:`shards` lists what was written. The folder is expected
    to be a temporary one that the runner commits, so no tar is seen half-written.
    """

    def __init__(self, folder: Path, prefix: str, max_bytes: int) -> None:
        self.folder, self.prefix, self.max_bytes = folder, prefix, max_bytes
        self.shards: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._sink: _HashingFile | None = None
        self._handle = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        if self._tar is None or (self._sink.size >= self.max_bytes and self.shards[-1].samples):
            self._open()
        info = self.shards[-1]
        for name in sorted(fields):
            data = fields[name]
            member = tarfile.TarInfo(f"{key}.{name}")
            member.size, member.mtime, member.mode = len(data), FIXED_MTIME, MEMBER_MODE
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            self._tar.addfile(member, io.BytesIO(data))
            array = decode_npy(data) if name.endswith(".npy") else None
            info.fields.setdefault(field_kind(name), FieldStats()).add(data, array)
        info.samples += 1
        info.keys.append(key)

    def _open(self) -> None:
        self._close()
        path = self.folder / f"{self.prefix}-{len(self.shards):02d}.tar"
        self._handle = open(path, "wb")
        self._sink = _HashingFile(self._handle)
        self._tar = tarfile.open(
            fileobj=self._sink, mode="w", format=tarfile.GNU_FORMAT
        )  # long ids fit
        self.shards.append(ShardInfo(path))

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._handle.close()
        info = self.shards[-1]
        info.bytes, info.sha256 = self._sink.size, self._sink.sha256.hexdigest()
        self._tar = self._sink = self._handle = None


def field_kind(name: str) -> str:
    """Fields that repeat per frame (``frame_00012.jpg``) are counted together (``frame_*.jpg``)."""
    stem, _, ext = name.rpartition(".")
    if stem.startswith("frame_") and stem[6:].isdigit():
        return f"frame_*.{ext}"
    return name


def parse_size(text: str | int) -> int:
    """``"1GB"``, ``"500MB"``, ``"64KiB"`` or a byte count."""
    if isinstance(text, int):
        return text
    units = {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
    }
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("kmgib")
    unit = raw[len(number) :]
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise PrepError(f"cannot read size {text!r}; write e.g. 1GB, 500MB or 1048576") from None
    if value < 1:
        raise PrepError(f"size must be positive, got {text!r}")
    return value


def wids_index(
    name: str, shards: Iterable[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """A split's index: what ``wids.ShardListDataset`` reads, plus sha256, stats and the sample
    keys in order per shard."""
    shardlist = [
        {
            "url": s["name"],
            "nsamples": s["samples"],
            "filesize": s["bytes"],
            "sha256": s["sha256"],
            "fields": s["fields"],
            "keys": s["keys"],  # readers check each sample against its place here
        }
        for s in shards
    ]
    return {"__kind__": WIDS_KIND, "wids_version": 1, "name": name, "shardlist": shardlist, **extra}


def read_index(shard_dir: Path) -> dict[str, Any]:
    path = shard_dir / INDEX_NAME
    if not path.is_file():
        raise PrepError(f"no shard index at {path}; run --stage features first")
    try:
        index = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ShardError(f"{path} is not a JSON shard index: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("shardlist"), list):
        raise ShardError(f"{path} has no shardlist: not a prep or wids shard index")
    return index


def plain_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not set(name) & {"/", "\\", "\0"}


class _HashingReader(io.RawIOBase):
    """Reads a file once while hashing it, so a check needs one pass, not two."""

    def __init__(self, handle, digest) -> None:
        self._handle, self.digest = handle, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._handle.readinto(buffer)
        self.digest.update(memoryview(buffer)[:count])
        return count


def iter_tar_samples(path: Path, digest=None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Samples of one tar, grouped by key, with plain :mod:`tarfile` (no WebDataset needed).

    Only regular members with plain names are read (prep writes nothing else); a link, a
    folder or a name with a path in it is a :class:`ShardError`. With ``digest`` (a hashlib
    object) the whole file is hashed in the same single read.
    """
    with open(path, "rb") as handle:
        if digest is None:
            yield from _grouped(path, tarfile.open(fileobj=handle, mode="r:"))
            return
        reader = io.BufferedReader(_HashingReader(handle, digest), 1 << 20)
        yield from _grouped(path, tarfile.open(fileobj=reader, mode="r|"))
        while reader.read(1 << 20):  # the end-of-archive padding belongs to the hash too
            pass


def _grouped(path: Path, tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes]]]:
    key, fields = None, {}
    with tar:
        for member in tar:
            _check_member(path, member)
            member_key, _, ext = member.name.partition(".")
            if member_key != key and key is not None:
                yield key, fields
                fields = {}
            key = member_key
            fields[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, fields


def _check_member(path: Path, member: tarfile.TarInfo) -> None:
    if not member.isreg():
        kind = "a symlink" if member.issym() else "a hard link" if member.islnk() else "not a file"
        raise ShardError(f"{path.name}: member {member.name!r} is {kind}; shards hold plain files")
    if not plain_name(member.name) or "." not in member.name:
        raise ShardError(
            f"{path.name}: member {member.name!r} is not a plain key.field name; "
            "shards hold no paths"
        )
