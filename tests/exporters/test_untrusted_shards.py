"""Shards from elsewhere are untrusted input: a json id that would name a path, a cut tar, a
member with a path, a link or a pickled array are each answered in one line by ``prep
verify``, every exporter and the loader, and nothing is ever written outside ``--to``. Each
damaged run is a copy of a real prepared run whose index was rewritten to match the damage
(sizes, checksums, keys), as someone handing over a doctored run would."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from exporters.signjoey import SignJoeyExporter
from pipeline.errors import PrepError
from pipeline.export import ExportSettings, ExportSource
from pipeline.layout import Layout
from pipeline.loader import make_loader
from pipeline.shard_reader import ShardError
from tests.conftest import prep

Members = list[tuple[tarfile.TarInfo, bytes]]
EXPORTS = ["signjoey", "spamo"]  # gfslt-vlp and sign2gpt decode a video corpus from its files


def copied(prepared: Path, folder: Path) -> Path:
    return Path(shutil.copytree(prepared, folder / "out"))


def first_shard(out: Path, split: str = "train") -> tuple[Path, dict, dict]:
    folder = Layout(out).shard_dir(split)
    index = json.loads((folder / "index.json").read_text())
    return folder, index, index["shardlist"][0]


def members_of(path: Path) -> Members:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]


def rewrite_shard(out: Path, change: Callable[[Members], Members], reindex: bool = True) -> Path:
    """Rewrite the train split's first shard through ``change``; with ``reindex`` its index
    entry is made to match (size, sha256, count, keys)."""
    folder, index, entry = first_shard(out)
    path = folder / entry["url"]
    members = change(members_of(path))
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    if reindex:
        data = path.read_bytes()
        keys = list(dict.fromkeys(m.name.rsplit("/", 1)[-1].partition(".")[0] for m, _ in members))
        entry.update(
            filesize=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            nsamples=len(keys),
            keys=keys,
        )
        (folder / "index.json").write_text(json.dumps(index))
    return path


def with_json_id(new_id: str) -> Callable[[Members], Members]:
    def change(members: Members) -> Members:
        out, done = [], False
        for info, data in members:
            if info.name.endswith(".json") and not done:
                meta = json.loads(data)
                meta["id"], done = new_id, True
                data = json.dumps(meta).encode()
            out.append((info, data))
        return out

    return change


def renamed_member(name: str, kind: bytes = tarfile.REGTYPE) -> Callable[[Members], Members]:
    """The first non-json member renamed (or turned into a link to ``/etc/passwd``)."""

    def change(members: Members) -> Members:
        out, done = [], False
        for info, data in members:
            if not done and not info.name.endswith(".json"):
                info, done = tarfile.TarInfo(name or info.name), True
                info.type = kind
                if kind == tarfile.SYMTYPE:
                    info.linkname, data = "/etc/passwd", b""
            out.append((info, data))
        return out

    return change


def pickled_array(members: Members) -> Members:
    out, done = [], False
    for info, data in members:
        if info.name.endswith(".dinov2.npy") and not done:
            buffer = io.BytesIO()
            np.save(buffer, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
            data, done = buffer.getvalue(), True
        out.append((info, data))
    return out


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("prep: error: ") and "Traceback" not in result.output, lines
    return lines[-1]


def verify_problems(out: Path) -> str:
    result = prep("verify", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output


def loader_error(out: Path) -> str:
    with pytest.raises(ShardError) as caught:
        for _ in make_loader(out, "train", batch_size=2, num_workers=0, train=False):
            pass
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_json_id_naming_a_path_never_writes_outside_to(prepared_videos, tmp_path):
    out = copied(prepared_videos, tmp_path)
    rewrite_shard(out, with_json_id("../../../../PWNED_id"))
    assert "does not match its tar key" in verify_problems(out)
    for name in EXPORTS:
        target = tmp_path / "exports" / name / "to"
        line = one_line_error(prep("export", "--format", name, "--out", out, "--to", target))
        assert "'../../../../PWNED_id' does not match its tar key" in line, (name, line)
    assert not list(tmp_path.rglob("PWNED*"))
    assert "does not match its tar key" in loader_error(out)


def test_an_exporter_writes_only_inside_to(prepared_videos, tmp_path):
    target = tmp_path / "to"
    exporter = SignJoeyExporter(ExportSource(prepared_videos), target, ExportSettings())
    assert exporter.inside_target(target / "a" / "b.npy") == target / "a" / "b.npy"
    (tmp_path / "elsewhere").mkdir()
    (target / "link").parent.mkdir(parents=True)
    (target / "link").symlink_to(tmp_path / "elsewhere")
    for escaping in (target / ".." / "x.npy", target / "link" / "x.npy", target):
        with pytest.raises(PrepError, match="would be written outside --to"):
            exporter.inside_target(escaping)


def test_a_truncated_shard_is_named_not_read_as_a_shorter_one(prepared_videos, tmp_path):
    out = copied(prepared_videos, tmp_path)
    _folder, _index, entry = first_shard(out)
    path = out / "shards" / "train" / entry["url"]
    path.write_bytes(path.read_bytes()[: entry["filesize"] * 5 // 8])
    assert f"{entry['url']}: " in verify_problems(out)
    line = one_line_error(
        prep("export", "--format", "signjoey", "--out", out, "--to", tmp_path / "t")
    )
    assert entry["url"] in line and "truncated" in line
    assert "truncated" in loader_error(out)


def test_a_tar_cut_and_reindexed_is_still_caught_by_its_keys(prepared_videos, tmp_path):
    """Cut between samples and the size re-recorded, the keys the index lists still tell."""
    out = copied(prepared_videos, tmp_path)
    folder, index, entry = first_shard(out)
    keys = list(entry["keys"])
    rewrite_shard(out, lambda members: [m for m in members if not m[0].name.startswith(keys[-1])])
    entry = json.loads((folder / "index.json").read_text())["shardlist"][0]
    entry["keys"], entry["nsamples"] = keys, len(keys)  # what it held before it was cut
    (folder / "index.json").write_text(json.dumps({**index, "shardlist": [entry]}))
    line = one_line_error(prep("export", "--format", "spamo", "--out", out, "--to", tmp_path / "t"))
    assert f"{len(keys) - 1} samples, its index says {len(keys)}" in line


@pytest.mark.parametrize(
    "damage, said",
    [
        (renamed_member("../x.dinov2.npy"), "is not a plain key.field name"),
        (renamed_member("/x.dinov2.npy"), "is not a plain key.field name"),
        (renamed_member("", tarfile.SYMTYPE), "is a symlink"),
        (pickled_array, "dinov2.npy unreadable: Object arrays cannot be loaded"),
    ],
    ids=["dotdot", "absolute", "symlink", "object-npy"],
)
def test_members_that_prep_never_writes_are_one_line_everywhere(
    prepared_videos, tmp_path, damage, said
):
    out = copied(prepared_videos, tmp_path)
    rewrite_shard(out, damage)
    assert said in verify_problems(out)
    for name in ("signjoey", "spamo"):
        target = tmp_path / name
        line = one_line_error(prep("export", "--format", name, "--out", out, "--to", target))
        assert said in line, (name, line)
    assert said in loader_error(out)
    assert not (Path("/x.dinov2.npy").exists() or (tmp_path / "x.dinov2.npy").exists())


def test_an_index_url_naming_a_path_is_refused(prepared_videos, tmp_path):
    out = copied(prepared_videos, tmp_path)
    folder, index, entry = first_shard(out)
    entry["url"] = "../../manifest/train.parquet"
    (folder / "index.json").write_text(json.dumps(index))
    said = "is not a file name in that folder"
    assert said in verify_problems(out)
    assert said in one_line_error(
        prep("export", "--format", "signjoey", "--out", out, "--to", tmp_path / "t")
    )
    with pytest.raises(ShardError, match=said):
        make_loader(out, "train", num_workers=0)


def test_an_export_killed_in_its_first_split_resumes(prepared_phoenix, tmp_path, monkeypatch):
    reference, target = tmp_path / "reference", tmp_path / "resumed"
    args = ["export", "--format", "signjoey", "--out", prepared_phoenix]
    assert prep(*args, "--to", reference).exit_code == 0
    original = SignJoeyExporter.export_split

    def dies_after_writing(self, split):
        (self.target / "half-written.tmp").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(SignJoeyExporter, "export_split", dies_after_writing)
    assert prep(*args, "--to", target).exit_code != 0
    monkeypatch.setattr(SignJoeyExporter, "export_split", original)
    result = prep(*args, "--to", target)
    assert result.exit_code == 0, result.output
    for path in sorted(reference.glob("phoenix14t.*")):
        assert path.read_bytes() == (target / path.name).read_bytes(), path.name
