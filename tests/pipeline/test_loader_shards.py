"""The loader's shard index read from raw tar headers (``plain_members``) agrees with
:mod:`tarfile` on the shards prep writes, long names included, and hands anything unusual to
tarfile, whose reading names the problem in one line."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from pipeline.errors import ShardError
from pipeline.shard_reader import ShardTable, plain_members, tarfile_members
from pipeline.shards import ShardWriter, encode_json, encode_npy


def write_shard(folder, keys):
    with ShardWriter(folder, "t", 10**9) as writer:
        for key in keys:
            meta = {"id": key, "fields": {"dinov2.npy": {}}}
            array = encode_npy(np.ones((3, 4), np.float16))
            writer.write(key, {"json": encode_json(meta), "dinov2.npy": array})
    return writer.shards[0]


def test_raw_headers_read_as_tarfile_does_long_names_included(tmp_path):
    keys = ["a", "b" * 150, "c%2Ed"]  # 150 characters: a GNU ././@LongLink name
    shard = write_shard(tmp_path, keys)
    assert plain_members(shard.path) == list(tarfile_members(shard.path))
    entry = {**shard.as_dict(), "nsamples": 3, "filesize": shard.bytes}
    table = ShardTable.scan(shard.path, entry)
    assert table.keys == tuple(keys)


def test_anything_unusual_is_read_by_tarfile_and_named_in_one_line(tmp_path):
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        data = encode_json({"id": "a"})
        member = tarfile.TarInfo("a.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
        link = tarfile.TarInfo("b.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert plain_members(path) is None
    entry = {"nsamples": 2, "filesize": path.stat().st_size}
    with pytest.raises(ShardError, match=r"member 'b.json' is a symlink; shards hold plain files"):
        ShardTable.scan(path, entry)
    data = bytearray(path.read_bytes())
    data[600] ^= 0x01  # inside the first member's data: headers still well-formed
    data[10] ^= 0x01  # the first header's name: its checksum no longer matches
    path.write_bytes(bytes(data))
    assert plain_members(path) is None
    with pytest.raises(ShardError, match="unreadable after 0 members") as error:
        ShardTable.scan(path, entry)
    assert "\n" not in str(error.value)
