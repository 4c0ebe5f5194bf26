"""The loader over remote shards: a real HTTP server on loopback (Python's ``http.server`` in a
thread) serving a prepared run, one that cuts a shard off halfway (once, or every time), one
that serves altered bytes; ``pipe:`` commands as webdataset spells them; fsspec URLs."""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from pipeline.errors import PrepError, ShardError
from pipeline.loader import make_loader
from pipeline.remote import TransferError
from tests.pipeline.test_loader_resume import summary, write_run

OPTIONS = dict(batch_size=4, shuffle_buffer=8, frame_stride=2, random_shift=3, seed=4)


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; a path in ``server.cut`` is sent half and the connection dropped (its
    count of remaining cuts goes down by one; -1 cuts forever); ``server.altered`` paths are
    sent with one byte flipped."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests[self.path] += 1
        remaining = self.server.cut.get(self.path, 0)
        if remaining == 0 and self.path not in self.server.altered:
            return super().do_GET()
        data = bytearray((Path(self.directory) / self.path.lstrip("/")).read_bytes())
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if remaining:
            self.server.cut[self.path] = remaining - 1 if remaining > 0 else -1
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        data[len(data) // 2] ^= 0xFF
        self.wfile.write(bytes(data))

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("remote") / "out")


@pytest.fixture
def server(run):
    """An HTTP server on a free loopback port serving the run; stopped after the test."""
    handler = functools.partial(FaultyHandler, directory=str(run))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests, httpd.cut, httpd.altered = Counter(), {}, set()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def batches(out, **options) -> list:
    return [summary(b) for b in make_loader(out, "train", **{**OPTIONS, **options})]


def first_shard(run) -> str:
    return "/shards/train/" + sorted(p.name for p in (run / "shards" / "train").glob("*.tar"))[0]


def cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*.tar") if not p.name.startswith(".")]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_over_http_the_batches_are_the_local_ones(run, server, tmp_path):
    local = batches(run, num_workers=0)
    assert batches(server.url, num_workers=2, cache_dir=tmp_path) == local
    shards = [p for p in server.requests if p.endswith(".tar")]
    assert shards and all(server.requests[p] == 1 for p in shards)  # one download each


def test_a_connection_cut_once_is_retried_without_losing_or_repeating_a_sample(
    run, server, tmp_path
):
    server.cut[first_shard(run)] = 1
    assert batches(server.url, num_workers=0, cache_dir=tmp_path) == batches(run, num_workers=0)
    assert server.requests[first_shard(run)] == 2


def test_a_connection_cut_every_time_ends_in_one_line_after_bounded_retries(run, server, tmp_path):
    server.cut[first_shard(run)] = -1
    with pytest.raises(TransferError, match=r"train-00\.tar: download failed after 3 tries") as e:
        batches(server.url, num_workers=0, cache_dir=tmp_path, retries=2)
    assert "\n" not in str(e.value) and server.requests[first_shard(run)] == 3
    assert not cache_files(tmp_path)  # nothing half-written is left to be read


def test_a_shard_with_other_bytes_fails_its_checksum_in_one_line(run, server, tmp_path):
    server.altered.add(first_shard(run))
    with pytest.raises(ShardError, match="sha256 .* its index says"):
        batches(server.url, num_workers=0, cache_dir=tmp_path)


def test_the_cache_stays_within_its_byte_bound(run, server, tmp_path):
    shards = sorted((run / "shards" / "train").glob("*.tar"))
    bound = 3 * max(p.stat().st_size for p in shards)
    assert sum(p.stat().st_size for p in shards) > bound  # the run does not fit
    assert batches(server.url, num_workers=0, cache_dir=tmp_path, cache_bytes=bound) == batches(
        run, num_workers=0
    )
    assert sum(p.stat().st_size for p in cache_files(tmp_path)) <= bound


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_a_tight_cache_shared_by_workers_evicts_without_losing_a_sample(run, server, tmp_path):
    """Two workers, each fetching two shards ahead, in a cache of two shards: downloads in
    progress count against the bound, and a shard evicted by the other worker between its
    download and its opening is fetched again."""
    shards = sorted((run / "shards" / "train").glob("*.tar"))
    bound = 2 * max(p.stat().st_size for p in shards)
    options = {"cache_dir": tmp_path, "cache_bytes": bound, "num_workers": 2}
    assert batches(server.url, **options) == batches(run, num_workers=0)
    assert sum(p.stat().st_size for p in cache_files(tmp_path)) <= bound
    assert not list(tmp_path.rglob("*.part"))


def test_a_missing_run_says_so_in_one_line(server, tmp_path):
    with pytest.raises(TransferError, match="index.json: download failed after 1 tries: HTTP"):
        make_loader(f"{server.url}/nothing", "train", cache_dir=tmp_path)


def test_pipe_commands_as_webdataset_spells_them(run, tmp_path):
    url = f"pipe:cat {run}/{{path}}"
    assert batches(url, num_workers=0, cache_dir=tmp_path) == batches(run, num_workers=0)
    with pytest.raises(PrepError, match=r"needs \{path\}"):
        make_loader("pipe:cat shards.tar", "train", cache_dir=tmp_path)
    failing = f"pipe:cat {run}/missing-{{path}} 2>/dev/null"
    with pytest.raises(TransferError, match="failed after 2 tries: pipe command exited with 1"):
        make_loader(failing, "train", cache_dir=tmp_path, retries=1)


def test_fsspec_urls_read_through_the_same_cache(run, tmp_path):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in (run / "shards" / "train").iterdir():
        memory.pipe(f"/prep-run/shards/train/{path.name}", path.read_bytes())
    assert batches("memory://prep-run", num_workers=0, cache_dir=tmp_path) == batches(
        run, num_workers=0
    )


def test_without_fsspec_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(PrepError, match=r"pip install 'prep\[remote\]'"):
        make_loader("s3://bucket/run", "train", cache_dir=tmp_path)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_a_local_shard_with_other_bytes_of_the_same_size_fails_its_checksum(tmp_path):
    out = write_run(tmp_path / "out")
    shard = sorted((out / "shards" / "train").glob("*.tar"))[-1]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # inside the first member's payload: the tar still reads
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"^{out}/shards/train/{shard.name}: sha256 .* says") as e:
        batches(out, num_workers=2)
    assert "\n" not in str(e.value)  # a worker's error keeps its one line
    assert len(batches(out, num_workers=2, checksums=False)) > 0  # checksums=False reads it
