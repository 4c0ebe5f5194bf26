"""Reading shards, which may come from elsewhere and so are untrusted input: each shard is
checked against its index entry as it is read (size first, keys in order, count), every member
must be a plain ``key.field`` file, a sample's json must name the sample its tar key names, and
arrays must be numbers. Whatever is wrong becomes one :class:`ShardError` line naming the shard;
``prep verify``, the exporters and the loader all read through here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from pipeline.errors import PrepError, ShardError
from pipeline.shards import (
    INDEX_NAME,
    _check_member,
    decode_npy,
    iter_tar_samples,
    plain_name,
    sample_key,
)


def shard_file(folder: Path, entry: dict[str, Any]) -> Path:
    """The tar an index entry names: only a plain file name inside ``folder``, never a path."""
    url = entry.get("url") if isinstance(entry, dict) else None
    if not isinstance(url, str) or not plain_name(url):
        raise ShardError(
            f"{folder / INDEX_NAME}: shard url {url!r} is not a file name in that folder"
        )
    return folder / url


def read_shard(
    folder: Path, entry: dict[str, Any], digest=None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples of one indexed shard, checked against its index entry while they are read:
    its size before the first byte (a cut tar reads as a shorter archive), each key in order
    (when the index lists them) and the sample count at the end."""
    path = shard_file(folder, entry)
    checked_size(path, entry)
    keys, count = entry.get("keys"), 0
    try:
        for key, fields in iter_tar_samples(path, digest):
            if keys is not None and (count >= len(keys) or keys[count] != key):
                listed = keys[count] if count < len(keys) else "nothing more"
                raise ShardError(f"{path}: sample {count} is {key!r}, its index lists {listed!r}")
            count += 1
            yield key, fields
    except tarfile.TarError as exc:
        raise ShardError(f"{path}: unreadable after {count} samples: {exc}") from None
    if count != entry.get("nsamples"):
        raise ShardError(f"{path}: {count} samples, its index says {entry.get('nsamples')}")


def sample_meta(shard: Path | str, key: str, fields: dict[str, bytes]) -> dict[str, Any]:
    """A sample's json, checked: an object whose ``id`` is the sample the tar key names, and
    whose declared ``fields`` are all members of the sample. An id that differs from its key
    (``../../x``) never reaches a file name."""
    where = f"{Path(shard).name}: sample {key!r}"
    if "json" not in fields:
        raise ShardError(f"{where} has no json member")
    try:
        meta = json.loads(fields["json"])
    except (UnicodeDecodeError, ValueError) as exc:
        raise ShardError(f"{where}: json unreadable ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("id"), str):
        raise ShardError(f"{where}: json is not an object with a string id")
    try:
        expected = sample_key(meta["id"])
    except PrepError:
        expected = None
    if expected != key:
        raise ShardError(f"{where}: json id {meta['id']!r} does not match its tar key")
    declared = meta.get("fields", {})
    if not isinstance(declared, dict):
        raise ShardError(f"{where}: json fields is not an object")
    missing = [name for name, info in sorted(declared.items()) if not _present(name, info, fields)]
    if missing:
        raise ShardError(f"{where}: json declares {', '.join(missing)}, not in the shard")
    return meta


def _present(name: str, info: Any, fields: dict[str, bytes]) -> bool:
    """A declared field is a member; a declared pattern (``frame_*.jpg``) has its ``count``."""
    if "*" not in name:
        return name in fields
    count = sum(1 for member in fields if fnmatch.fnmatchcase(member, name))
    return count == (info.get("count", count) if isinstance(info, dict) else count)


def checked_npy(shard: Path | str, key: str, name: str, data: bytes) -> np.ndarray:
    """:func:`decode_npy` with a one-line error naming the shard, sample and member (an object
    array, which only pickle could read, or a damaged header)."""
    try:
        array = decode_npy(data)
    except (ValueError, EOFError, OSError) as exc:
        raise ShardError(f"{Path(shard).name}: sample {key!r}: {name} unreadable: {exc}") from None
    if array.dtype.kind not in "biufc":
        raise ShardError(
            f"{Path(shard).name}: sample {key!r}: {name} holds {array.dtype} values, not numbers"
        )
    return array


def read_samples(url: str, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One shard's raw samples, checked against its index entry while read (size, keys in
    order, count, plain members, json id = tar key): a cut or foreign shard is one line."""
    for key, fields in read_shard(Path(url).parent, entry):
        yield {"__key__": key, "__url__": url, "__meta__": sample_meta(url, key, fields), **fields}


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Raw sample -> ``json`` parsed, ``*.npy`` as read-only arrays (never unpickled), rest bytes."""
    out: dict[str, Any] = {"__key__": sample["__key__"]}
    url = sample.get("__url__", "shard")
    for name, value in sample.items():
        if name.startswith("__"):
            continue
        if name == "json":
            out[name] = sample["__meta__"] if "__meta__" in sample else json.loads(value)
        elif name.endswith(".npy"):
            out[name[: -len(".npy")]] = checked_npy(url, sample["__key__"], name, value)
        else:
            out[name] = value
    return out


def per_frame_fields(urls: Sequence[str], entries: Sequence[dict[str, Any]]) -> list[str]:
    """The per-frame arrays the shards hold (e.g. ``dinov2``), as the first sample's json lists
    them: ``.npy`` fields not marked ``per_clip``. The default of :func:`make_loader`."""
    for url, entry in zip(urls, entries):
        for sample in read_samples(url, entry):
            described = sample["__meta__"].get("fields", {})
            return [
                name.removesuffix(".npy")
                for name, info in sorted(described.items())
                if name.endswith(".npy") and not (isinstance(info, dict) and info.get("per_clip"))
            ]
    return []


def checked_size(path: Path, entry: dict[str, Any]) -> None:
    """The shard's size against its index entry, before any byte is read."""
    if not path.is_file():
        raise ShardError(f"{path}: listed in {INDEX_NAME} but missing")
    size = path.stat().st_size
    if size != entry.get("filesize"):
        raise ShardError(
            f"{path}: {size} bytes, its index says {entry.get('filesize')}: the shard is "
            "truncated or was replaced; copy it again or rerun --stage features"
        )


def checked_sha256(path: Path, entry: dict[str, Any]) -> None:
    """The whole file's sha256 against its index entry (a replaced shard of the same size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    if entry.get("sha256") and digest.hexdigest() != entry["sha256"]:
        raise ShardError(
            f"{path}: sha256 {digest.hexdigest()[:16]}..., its index says "
            f"{str(entry['sha256'])[:16]}...: the shard was altered or replaced"
        )


@dataclass(frozen=True)
class ShardTable:
    """Where each sample's members lie in one shard, read from its tar headers alone and checked
    against the index entry (size, plain members, keys in order, count), so samples can be read
    in any order with one ``pread`` per member."""

    path: Path
    keys: tuple[str, ...]
    members: tuple[tuple[tuple[str, int, int], ...], ...]  # per sample: (field, offset, size)

    @classmethod
    def scan(cls, path: Path, entry: dict[str, Any]) -> "ShardTable":
        checked_size(path, entry)
        keys: list[str] = []
        members: list[list[tuple[str, int, int]]] = []
        for name, offset, size in plain_members(path) or tarfile_members(path):
            key, _, field = name.partition(".")
            if not keys or keys[-1] != key:
                keys.append(key)
                members.append([])
            members[-1].append((field, offset, size))
        listed = entry.get("keys")
        for count, key in enumerate(keys):
            if listed is not None and (count >= len(listed) or listed[count] != key):
                expected = listed[count] if count < len(listed) else "nothing more"
                raise ShardError(f"{path}: sample {count} is {key!r}, its index lists {expected!r}")
        if len(keys) != entry.get("nsamples"):
            raise ShardError(f"{path}: {len(keys)} samples, its index says {entry.get('nsamples')}")
        return cls(path, tuple(keys), tuple(tuple(m) for m in members))

    def sample(self, handle: int, position: int) -> dict[str, Any]:
        """The raw sample at ``position`` (read through the open file descriptor ``handle``),
        with its json checked (object, id = tar key, declared members present)."""
        key = self.keys[position]
        fields = {}
        for field, offset, size in self.members[position]:
            data = os.pread(handle, size, offset)
            if len(data) != size:
                raise ShardError(f"{self.path}: sample {key!r}: {field} cut short")
            fields[field] = data
        url = str(self.path)
        return {"__key__": key, "__url__": url, "__meta__": sample_meta(url, key, fields), **fields}

    def size_of(self, position: int, field: str) -> int:
        """A member's byte size (for a fixed row width, an order-preserving stand-in for T)."""
        return next((size for name, _, size in self.members[position] if name == field), 0)


def tarfile_members(path: Path) -> Iterator[tuple[str, int, int]]:
    """Every member's name, data offset and size, through :mod:`tarfile`, each checked to be a
    plain ``key.field`` file (a link, a folder or a path is one line)."""
    count = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                _check_member(path, member)
                count += 1
                yield member.name, member.offset_data, member.size
    except tarfile.TarError as exc:
        raise ShardError(f"{path}: unreadable after {count} members: {exc}") from None


GNU_MAGIC, BLOCK = b"ustar  \x00", 512


def plain_members(path: Path) -> list[tuple[str, int, int]] | None:
    """:func:`tarfile_members` for the tars prep writes (GNU format, regular files, long names
    as ``././@LongLink``), read from the raw 512-byte headers: twenty times faster than
    :mod:`tarfile`, which matters when a loader process indexes every shard. Anything else (a
    bad header checksum, a link, PAX headers, a cut file, a name that is not plain) returns
    None, and :func:`tarfile_members` reads the shard and names the problem."""
    found: list[tuple[str, int, int]] = []
    with open(path, "rb") as handle:
        descriptor, offset, long_name = handle.fileno(), 0, None
        end = os.fstat(descriptor).st_size
        while offset + BLOCK <= end:
            header = os.pread(descriptor, BLOCK, offset)
            if header == bytes(BLOCK):
                return found
            size = _header_size(header)
            if size is None or offset + BLOCK + size > end:
                return None
            kind, data = header[156:157], offset + BLOCK
            offset = data + -(-size // BLOCK) * BLOCK
            if kind == b"L" and long_name is None:
                long_name = os.pread(descriptor, size, data).rstrip(b"\0")
                continue
            if kind not in (b"0", b"\0"):
                return None
            raw = long_name if long_name is not None else header[:100].split(b"\0", 1)[0]
            long_name = None
            name = raw.decode("utf-8", "surrogateescape")
            if not plain_name(name) or "." not in name:
                return None
            found.append((name, data, size))
    return None  # no end-of-archive block: let tarfile say what is wrong


def _header_size(header: bytes) -> int | None:
    """The member size of a well-formed GNU header (checksum right), else None."""
    if header[257:265] != GNU_MAGIC or header[124] & 0x80:
        return None
    try:
        size = int(header[124:136].rstrip(b"\0 ").strip() or b"0", 8)
        stored = int(header[148:156].rstrip(b"\0 ").strip() or b"0", 8)
    except ValueError:
        return None
    return size if stored == sum(header) - sum(header[148:156]) + 8 * 32 else None
