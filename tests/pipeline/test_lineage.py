"""Lineage: shards made before an upstream stage was rerun with other options are stale, and
every command says so (status, verify, export, the loader) until features is redone; then all
pass again. The scenario of issue 24, on a synthetic Phoenix14T corpus through the CLI."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from contextlib import contextmanager

import pyarrow.parquet as pq
import pytest

from pipeline.lineage import StaleOutputs
from pipeline.loader import make_loader
from pipeline.shards import iter_tar_samples
from tests.conftest import prep


@contextmanager
def served(out):
    """The run over HTTP on a free loopback port, as a training job on another machine sees it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def stage_state(out, stage: str) -> str:
    result = prep("status", "--out", out)
    assert result.exit_code == 0, result.output
    states = result.output.split("\n\n", 1)[1]
    for line in states.splitlines():
        if line.split()[0] == stage:
            return line.split(maxsplit=1)[1]
    raise AssertionError(f"{stage} not in {states}")


def shard_gloss_ids(out, split: str = "train") -> dict[str, list]:
    found = {}
    for tar in sorted((out / "shards" / split).glob("*.tar")):
        for _key, fields in iter_tar_samples(tar):
            meta = json.loads(fields["json"])
            found[meta["id"]] = meta["pseudo_gloss_ids"]
    return found


def table_gloss_ids(out, split: str = "train") -> dict[str, list]:
    rows = pq.read_table(out / "pseudo-gloss" / f"{split}.parquet").to_pylist()
    return {row["id"]: row["pseudo_gloss_ids"] for row in rows}


def test_shards_older_than_their_pseudo_glosses_are_stale_everywhere(
    phoenix_root, tmp_path, tiny_dinov2
):
    out = tmp_path / "out"
    where = ["--dataset", "phoenix14t", "--root", phoenix_root, "--out", out, "--quiet"]
    assert prep("run", "--stage", "pseudo-gloss", *where).exit_code == 0
    features = ["run", "--stage", "features", *where, "--dinov2", tiny_dinov2]
    assert prep(*features).exit_code == 0
    assert stage_state(out, "features") == "done"
    assert stage_state(out, "hand-captions") == "not run"
    assert prep("verify", "--out", out).exit_code == 0

    rerun = prep("run", "--stage", "pseudo-gloss", *where, "--overwrite", "--max-gloss-share", 0.13)
    assert rerun.exit_code == 0, rerun.output
    assert shard_gloss_ids(out) != table_gloss_ids(out)  # what a trainer would have been handed
    assert "features is now stale (pseudo-gloss was rerun with other options after it)" in (
        rerun.output
    )
    state = stage_state(out, "features")
    assert state.startswith("stale: pseudo-gloss was rerun with other options after it; ")
    assert "prep run --stage features --overwrite" in state
    assert stage_state(out, "pseudo-gloss") == "done"

    verified = prep("verify", "--out", out)
    assert verified.exit_code == 1
    assert "features all: stale: pseudo-gloss was rerun with other options" in verified.output
    assert "pseudo_gloss_ids differs from its table" in verified.output

    refused = prep("export", "--format", "signjoey", "--out", out, "--to", tmp_path / "x")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert (
        refused.output.strip()
        .splitlines()[-1]
        .startswith("prep: error: prep export signjoey: features is stale (pseudo-gloss was rerun")
    )
    assert "--allow-stale" in refused.output and not (tmp_path / "x").exists()
    allowed = prep(
        "export", "--format", "signjoey", "--out", out, "--to", tmp_path / "y", "--allow-stale"
    )
    assert allowed.exit_code == 0, allowed.output
    assert "Exported with `--allow-stale`" in (tmp_path / "y" / "EXPORT.md").read_text()

    with pytest.raises(StaleOutputs, match="features is stale .*allow_stale=True"):
        make_loader(out, "train", num_workers=0)
    loader = make_loader(out, "train", num_workers=0, train=False, allow_stale=True)
    assert list(loader.stale) == ["features"]
    with served(out) as url:  # the same run read remotely: its summaries say as much
        cache = {"cache_dir": tmp_path / "cache", "num_workers": 0}
        with pytest.raises(StaleOutputs, match="features is stale .pseudo-gloss was rerun with"):
            make_loader(url, "train", **cache)
        remote = make_loader(url, "train", **cache, train=False, allow_stale=True)
        assert list(remote.stale) == ["features"]

    redone = prep(*features, "--overwrite")
    assert redone.exit_code == 0, redone.output
    assert shard_gloss_ids(out) == table_gloss_ids(out)
    assert stage_state(out, "features") == "done"
    assert prep("verify", "--out", out).exit_code == 0
    assert (
        prep("export", "--format", "signjoey", "--out", out, "--to", tmp_path / "z").exit_code == 0
    )
    assert make_loader(out, "train", num_workers=0, train=False).stale == {}
    with served(out) as url:
        remote = make_loader(url, "train", cache_dir=tmp_path / "c2", num_workers=0, train=False)
        assert remote.stale == {} and len(list(remote)) == len(remote)


def test_a_stage_that_runs_after_the_shards_makes_them_stale(phoenix_root, tmp_path, tiny_dinov2):
    """Shards made before any pseudo-glosses existed lack their ids: stale once they exist."""
    out = tmp_path / "out"
    where = ["--dataset", "phoenix14t", "--root", phoenix_root, "--out", out, "--quiet"]
    assert prep("run", "--stage", "features", *where, "--dinov2", tiny_dinov2).exit_code == 0
    assert prep("run", "--stage", "pseudo-gloss", *where).exit_code == 0
    assert stage_state(out, "features").startswith("stale: pseudo-gloss ran after it; ")
