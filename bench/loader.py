"""The training loader against the loaders researchers pick, side by side in one run.

20,000 clips of float16 ``[T, 384]`` features (ViT-S width) whose lengths T are drawn from
Phoenix14T's (the dev split's ``num_frames`` in ``../shared/data/phoenix14t_dev.csv``, 16-272
frames, mean 107), written once as prep's shards (also what webdataset reads), as MosaicML
Streaming's MDS (``MDSWriter``) and as litdata's chunks (``litdata.optimize``). Each loader then
reads one shuffled training epoch in batches of 16 padded clips, in its own process: from the
local disk (page cache warm: each loader's files are read once before it runs) and from a loopback HTTP server
(Python's ``http.server``; a fresh cache each run), with 1 process and with 4 loader workers.
prep runs as a training job would: resumable state, every shard's sha256 checked.

Figures: samples/s, MB/s of feature payload, time to the first batch, and peak RSS (the sum
over the process and its workers, sampled every 20 ms). The peers live in a virtual
environment of their own, built under the work folder (mosaicml-streaming 0.13 needs
transformers<5; it sees prep's environment for torch and numpy through a .pth file).

    python bench/loader.py [--samples 20000] [--repeat 2] [--work /tmp/prep-bench-loader] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PHOENIX = REPO.parent / "shared" / "data" / "phoenix14t_dev.csv"
PEERS = ("mosaicml-streaming==0.13.*", "litdata")
WIDTH, BATCH, SHARD_BYTES = 384, 16, 256 * 10**6
LOADERS = ("prep", "webdataset", "streaming", "litdata")
PEER_VENV = {"streaming", "litdata"}
NO_HTTP = {  # what each says when given an http:// remote
    "streaming": "n/a: http:// is not a remote it reads (ValueError: Unsupported remote path)",
    "litdata": "n/a: http:// is not a remote it reads (taken as a local path)",
}


def phoenix_lengths(count: int) -> np.ndarray:
    """``count`` clip lengths drawn (seeded) from Phoenix14T dev's frame counts."""
    if not PHOENIX.is_file():
        sys.exit(f"needs {PHOENIX} (Phoenix14T dev's frame counts) for the length distribution")
    with open(PHOENIX, newline="") as handle:
        frames = [int(row["num_frames"]) for row in csv.DictReader(handle, delimiter="|")]
    return np.random.default_rng(0).choice(np.array(frames), size=count)


def clip(i: int, length: int) -> np.ndarray:
    return (
        np.random.default_rng(i)
        .standard_normal((length, WIDTH), dtype=np.float32)
        .astype(np.float16)
    )


def write_prep(work: Path, lengths: np.ndarray) -> None:
    sys.path.insert(0, str(REPO))
    from pipeline.shards import ShardWriter, encode_json, encode_npy, wids_index
    from pipeline.storage import atomic_write_json

    folder = work / "prep" / "shards" / "train"
    folder.mkdir(parents=True)
    with ShardWriter(folder, "train", SHARD_BYTES) as writer:
        for i, length in enumerate(lengths.tolist()):
            meta = {
                "id": f"clip{i:06d}",
                "num_frames": length,
                "fields": {"dinov2.npy": {"dtype": "float16", "shape": [length, WIDTH]}},
            }
            writer.write(
                meta["id"], {"json": encode_json(meta), "dinov2.npy": encode_npy(clip(i, length))}
            )
    entries = [s.as_dict() for s in writer.shards]
    atomic_write_json(
        folder / "index.json", wids_index("train", entries, {"samples": len(lengths)})
    )


def convert_peers(work: Path) -> None:
    """MDS and litdata copies of prep's shards (run in the peers' environment)."""
    import litdata
    from streaming import MDSWriter

    columns = {"key": "str", "features": "ndarray:float16", "json": "json"}
    with MDSWriter(out=str(work / "mds"), columns=columns, size_limit=1 << 26) as writer:
        for number in range(len(prep_entries(work))):
            for sample in shard_samples(number):
                writer.write({**sample, "json": json.loads(sample["json"])})
    litdata.optimize(
        fn=shard_samples,
        inputs=list(range(len(prep_entries(work)))),
        output_dir=str(work / "litdata"),
        chunk_bytes="64MB",
        num_workers=1,
    )


def prep_entries(work: Path) -> list[dict]:
    sys.path.insert(0, str(REPO))
    from pipeline.shards import read_index

    return read_index(work / "prep" / "shards" / "train")["shardlist"]


def shard_samples(number: int):
    """The samples of prep's shard ``number`` as the peers store them (litdata calls this in
    its own worker process, hence the work folder from the environment)."""
    sys.path.insert(0, str(REPO))
    from pipeline.shard_reader import read_samples
    from pipeline.shards import decode_npy

    work = Path(os.environ["LOADER_BENCH_WORK"])
    entry = prep_entries(work)[number]
    path = work / "prep" / "shards" / "train" / entry["url"]
    for sample in read_samples(str(path), entry):
        features = decode_npy(sample["dinov2.npy"])
        yield {"key": sample["__key__"], "features": features, "json": sample["json"].decode()}


def pad(features: list[np.ndarray]) -> dict:
    """The same collation for every peer as prep's: zero-padded float16 [B, T, D] and lengths."""
    import torch

    lengths = [len(f) for f in features]
    batch = np.zeros((len(features), max(lengths), WIDTH), dtype=np.float16)
    for row, f in enumerate(features):
        batch[row, : len(f)] = f
    return {"features": torch.from_numpy(batch), "lengths": torch.tensor(lengths)}


def wds_collate(samples):
    return pad([np.load(__import__("io").BytesIO(s[0]), allow_pickle=False) for s in samples])


def peer_collate(samples):
    return pad([np.asarray(s["features"]) for s in samples])


def make_reader(name: str, source: str, workers: int, work: Path, cache: Path):
    """An iterable of padded batches, as each library is meant to be used for training."""
    import torch

    base = source if source != "local" else None
    if name == "prep":
        sys.path.insert(0, str(REPO))
        from pipeline.loader import make_loader

        root = f"{base}/prep" if base else work / "prep"
        return make_loader(
            root, "train", batch_size=BATCH, num_workers=workers, cache_dir=cache, seed=1
        )
    if name == "webdataset":
        import webdataset as wds

        folder = work / "prep" / "shards" / "train"
        urls = [
            f"{base}/prep/shards/train/{p.name}" if base else str(p)
            for p in sorted(folder.glob("*.tar"))
        ]
        dataset = (
            wds.WebDataset(
                urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node, empty_check=False
            )
            .shuffle(500)
            .to_tuple("dinov2.npy", "json")
            .batched(BATCH, collation_fn=wds_collate)
        )
        return wds.WebLoader(dataset, batch_size=None, num_workers=workers)
    if base and name in NO_HTTP:
        raise SystemExit(NO_HTTP[name])
    if name == "streaming":
        from streaming import StreamingDataset

        remote = f"{base}/mds" if base else None
        local = str(cache / "mds") if base else str(work / "mds")
        dataset = StreamingDataset(
            remote=remote, local=local, shuffle=True, batch_size=BATCH, validate_hash=None
        )
        return torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, num_workers=workers, collate_fn=peer_collate
        )
    import litdata

    source_dir = f"{base}/litdata" if base else str(work / "litdata")
    dataset = litdata.StreamingDataset(source_dir, shuffle=True, cache_dir=str(cache / "lit"))
    return litdata.StreamingDataLoader(
        dataset, batch_size=BATCH, num_workers=workers, collate_fn=peer_collate
    )


def preload(name: str) -> None:
    import importlib

    import torch.utils.data  # noqa: F401

    sys.path.insert(0, str(REPO))
    modules = {"prep": "pipeline.loader", "streaming": "streaming", "litdata": "litdata"}
    importlib.import_module(modules.get(name, name))


class PeakRss:
    """The largest sum of RSS over this process and its children, sampled in a thread."""

    def __init__(self) -> None:
        import psutil

        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while self.running:
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak


def measure(name: str, source: str, workers: int, work: Path) -> dict:
    """One epoch of one loader: the figures, as one JSON line on stdout."""
    cache = Path(tempfile.mkdtemp(prefix="loader-cache-", dir=work))
    try:
        preload(name)  # imports are not the loader's time to a first batch
        rss = PeakRss()
        started = time.perf_counter()
        first, samples, payload = None, 0, 0
        for batch in make_reader(name, source, workers, work, cache):
            lengths = batch["lengths"]
            if first is None:
                first = time.perf_counter() - started
            samples += len(lengths)
            payload += int(lengths.sum()) * WIDTH * 2
        seconds = time.perf_counter() - started
        return {
            "samples": samples,
            "seconds": seconds,
            "samples_per_s": samples / seconds,
            "mb_per_s": payload / seconds / 1e6,
            "first_batch_s": first,
            "peak_rss_mb": rss.stop() / 1e6,
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def peer_python(work: Path) -> Path:
    """The peers' interpreter: a venv under ``work`` that sees prep's packages through a .pth
    (torch, numpy) and has the peers installed on top (their own transformers<5 first)."""
    venv = work / "peers"
    python = venv / "bin" / "python"
    if not (venv / ".installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        ours = subprocess.run(
            [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(site, "prep-venv.pth").write_text(ours + "\n")
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *PEERS], check=True)
        (venv / ".installed").touch()
    return python


def versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


DATA = {"prep": "prep", "webdataset": "prep", "streaming": "mds", "litdata": "litdata"}


def warm(folder: Path) -> None:
    """Read a loader's files once, so every loader starts from a warm page cache (the first
    one measured would otherwise pay for the disk)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass


def run_one(python: Path, name: str, source: str, workers: int, work: Path) -> dict:
    """One measurement in its own process (peak RSS and imports of that loader alone)."""
    warm(work / DATA[name])
    command = [str(python), str(Path(__file__)), "--measure", name, "--source", source]
    command += ["--workers", str(workers), "--work", str(work)]
    env = {**os.environ, "LOADER_BENCH_WORK": str(work), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(work: Path, samples: int) -> Path:
    """The data in all three formats (kept between runs of the same size) and the peers' venv."""
    python = peer_python(work)
    stamp = work / f".data-{samples}"
    if not stamp.is_file():
        for folder in ("prep", "mds", "litdata"):
            shutil.rmtree(work / folder, ignore_errors=True)
        started = time.perf_counter()
        write_prep(work, phoenix_lengths(samples))
        print(f"prep shards written in {time.perf_counter() - started:.0f} s", flush=True)
        env = {**os.environ, "LOADER_BENCH_WORK": str(work)}
        subprocess.run([str(python), str(Path(__file__)), "--convert"], check=True, env=env)
        stamp.touch()
    return python


def table(results: dict) -> list[str]:
    lines = ["| setting | loader | samples/s | MB/s | first batch s | peak RSS MB |"]
    lines.append("|---|---|---|---|---|---|")
    for (source, workers), rows in results.items():
        for name, row in rows.items():
            setting = f"{'local' if source == 'local' else 'http'}, {workers or 1} proc"
            if workers:
                setting = f"{'local' if source == 'local' else 'http'}, {workers} workers"
            if "error" in row:
                shown = (
                    row["error"] if row["error"].startswith("n/a") else f"failed: {row['error']}"
                )
                lines.append(f"| {setting} | {name} | {shown} | | | |")
                continue
            lines.append(
                f"| {setting} | {name} | {row['samples_per_s']:.0f} | {row['mb_per_s']:.0f} | "
                f"{row['first_batch_s']:.2f} | {row['peak_rss_mb']:.0f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "prep-bench-loader"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data for the next run")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per setting (best kept)")
    parser.add_argument("--measure", choices=LOADERS)
    parser.add_argument("--source", default="local")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--convert", action="store_true")
    args = parser.parse_args()
    if args.convert:
        return convert_peers(Path(os.environ["LOADER_BENCH_WORK"]))
    if args.measure:
        print(json.dumps(measure(args.measure, args.source, args.workers, args.work)))
        return None
    args.work.mkdir(parents=True, exist_ok=True)
    peers = prepare(args.work, args.samples)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(args.work),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        results = run_all(peers, args.work, f"http://127.0.0.1:{port}", args.repeat)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    report(results, peers)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return None


def run_all(peers: Path, work: Path, url: str, repeat: int) -> dict:
    """Every loader in every setting, ``repeat`` rounds interleaved; each keeps its best round
    (the machine is shared: the best round is the one least disturbed)."""
    results = {}
    for source in ("local", url):
        for workers in (0, 4):
            rows: dict[str, dict] = {}
            for _ in range(repeat):
                for name in LOADERS:
                    python = peers if name in PEER_VENV else Path(sys.executable)
                    row = run_one(python, name, source, workers, work)
                    print(f"{name} {source} workers={workers}: {row}", flush=True)
                    if "error" in row and row["error"].startswith("n/a"):
                        rows[name] = row
                    elif "error" not in row and row["samples_per_s"] > rows.get(name, {}).get(
                        "samples_per_s", 0
                    ):
                        rows[name] = row
                    rows.setdefault(name, row)
            results[("local" if source == "local" else "http", workers)] = rows
    return results


def report(results: dict, peers: Path) -> None:
    from _results import record

    print("\n".join(table(results)))
    known = {
        **versions(Path(sys.executable), ("webdataset",)),
        **versions(peers, ("mosaicml-streaming", "litdata")),
    }
    named = {"webdataset": "webdataset", "streaming": "mosaicml-streaming", "litdata": "litdata"}
    for (source, workers), rows in results.items():
        ours = rows["prep"]
        peers_ok = {n: r for n, r in rows.items() if n != "prep" and "error" not in r}
        setting = f"{source}, {f'{workers} workers' if workers else '1 process'}"
        if "error" in ours or not peers_ok:
            record("loader", f"epoch, {setting}", ours.get("error", "-"), None, None, ">= 1.0")
            continue
        best = max(peers_ok, key=lambda n: peers_ok[n]["samples_per_s"])
        theirs = peers_ok[best]
        version = known.get(named[best], "?")
        record(
            "loader",
            f"20k Phoenix-length float16 [T,384] clips, one epoch, {setting} (checksums, resumable)",
            f"{ours['samples_per_s']:.0f} samples/s, {ours['mb_per_s']:.0f} MB/s, first batch "
            f"{ours['first_batch_s']:.2f} s, {ours['peak_rss_mb']:.0f} MB RSS",
            f"{named[best]} {version}: {theirs['samples_per_s']:.0f} samples/s, "
            f"{theirs['mb_per_s']:.0f} MB/s, first batch {theirs['first_batch_s']:.2f} s, "
            f"{theirs['peak_rss_mb']:.0f} MB RSS",
            ours["samples_per_s"] / theirs["samples_per_s"],
            ">= 1.0",
        )


if __name__ == "__main__":
    main()
