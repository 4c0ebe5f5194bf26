"""Run-level configuration: config files, ranks from the launcher, environment variables.

Environment variables read here (and nowhere else):

- ``RANK`` / ``WORLD_SIZE``: set by ``accelerate launch`` and ``torchrun``.
- ``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT`` / ``SLURM_ARRAY_TASK_MIN``: Slurm job arrays.
- ``PREP_WORKERS``: default number of worker processes per rank.
- ``MASTER_ADDR`` (with ``WORLD_SIZE`` > 1): the ranks were started together by a launcher and
  coordinate through a torch.distributed process group (:mod:`pipeline.distributed`).
- ``LOCAL_RANK``: the rank on its node, which picks its GPU (``cuda:LOCAL_RANK``).
- ``PREP_DIST_TIMEOUT``: seconds a rank launched together with others waits for the slowest at a
  barrier (default 86400: ranks that resume with little left wait for the others' units).
- ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``: set to ``1`` at CLI start unless already set
  (:func:`enforce_offline`), so nothing reaches the network at run time.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, MutableMapping

import yaml

from pipeline.errors import PrepError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What every stage shares: where to read, where to write, and which share of the work."""

    dataset: str
    root: Path
    out: Path
    rank: int = 0
    world_size: int = 1
    workers: int = 1
    overwrite: bool = False
    quiet: bool = False
    retries: int = 1
    max_quarantine_share: float = 0.2  # a split quarantined beyond this fails the run


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a ``.toml``/``.yaml``/``.json`` file of option keys (dashes or underscores)."""
    if not path.is_file():
        raise PrepError(f"config file not found: {path}")
    text = path.read_bytes()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text.decode("utf-8"))
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise PrepError(f"config file must be .toml, .yaml or .json: {path}")
    except (ValueError, yaml.YAMLError) as exc:
        raise PrepError(f"cannot parse config file {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise PrepError(f"config file {path} must hold a table of options")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_options(
    flags: Mapping[str, Any], file_options: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Flags win over the config file, which wins over defaults; unknown file keys are an error."""
    unknown = sorted(set(file_options) - set(defaults))
    if unknown:
        raise PrepError(f"unknown key(s) in config file: {', '.join(unknown)}")
    merged = dict(defaults)
    merged.update({k: v for k, v in file_options.items()})
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


def rank_from_environment(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world_size) from torchrun/accelerate, else from a Slurm array, else (0, 1)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    return 0, 1


def launched_together(rank: int, world_size: int, env: Mapping[str, str] | None = None) -> bool:
    """Whether this rank belongs to a launch (accelerate, torchrun) whose ranks share a process group.

    Only when the launcher's ``RANK``/``WORLD_SIZE`` are the ones in use: explicit ``--rank`` flags
    that differ mean the ranks run apart.
    """
    env = os.environ if env is None else env
    if "MASTER_ADDR" not in env or int(env.get("WORLD_SIZE", "1")) <= 1:
        return False
    return (rank, world_size) == (int(env.get("RANK", "0")), int(env["WORLD_SIZE"]))


def local_rank_from_environment(env: Mapping[str, str] | None = None) -> int | None:
    env = os.environ if env is None else env
    return int(env["LOCAL_RANK"]) if env.get("LOCAL_RANK", "").strip() else None


def barrier_timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    return float(env.get("PREP_DIST_TIMEOUT", "86400"))


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def enforce_offline(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make Hugging Face libraries offline unless the user chose otherwise; returns what it set.

    Models are found on disk (:mod:`pipeline.models`); a download at run time would be a
    silent, unreproducible input. Must run before ``huggingface_hub`` is imported.
    """
    env = os.environ if env is None else env
    missing = {name: "1" for name in OFFLINE_VARIABLES if name not in env}
    env.update(missing)
    return missing


NATIVE_LOG_PREFIXES = (
    "W0000 ",
    "I0000 ",
    "E0000 ",
    "INFO: Created TensorFlow Lite",
    "WARNING: All log messages before absl::InitializeLog()",
)


def filter_native_stderr() -> None:
    """Drop the lines MediaPipe's C++ (absl, TF Lite) writes straight to file descriptor 2
    ("W0000 ... Feedback manager requires ...") from any thread, at any time, over the progress
    bars; everything else passes through as written. For the ``prep`` process only (``main``),
    not for prep used as a library; ``prep --debug`` calls it off before anything is written."""
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [kept_part(line) for line in lines]
            if pending and not any(
                p.encode().startswith(pending.lstrip(b"\r")[: len(p)]) for p in NATIVE_LOG_PREFIXES
            ):
                kept.append(pending)  # a progress bar's line without its newline yet
                pending = b""
            if kept:
                os.write(saved, b"".join(kept))
        if pending:
            os.write(saved, pending)

    thread = threading.Thread(target=forward, name="prep-stderr-filter", daemon=True)
    thread.start()
    NATIVE_FILTER.update(saved=saved, thread=thread)
    atexit.register(unfilter_native_stderr)  # the last lines (an error, "stopped") still get out


NATIVE_FILTER: dict[str, Any] = {}
NATIVE_PREFIXES_BYTES = tuple(p.encode() for p in NATIVE_LOG_PREFIXES)


def kept_part(line: bytes) -> bytes:
    """A line of stderr without the native log message in it: a progress bar's text that a
    message was written after (no newline between them) stays, the message goes."""
    cut = min((i for p in NATIVE_PREFIXES_BYTES if (i := line.find(p)) >= 0), default=-1)
    if cut < 0:
        return line + b"\n"
    return line[:cut].rstrip(b"\r") if line[:cut].strip(b"\r") else b""


def unfilter_native_stderr() -> None:
    """Give file descriptor 2 back its own stream, after what the filter holds is written
    (at exit, and for ``prep --debug``, which shows native logs)."""
    saved = NATIVE_FILTER.pop("saved", None)
    if saved is None:
        return
    sys.stderr.flush()
    os.dup2(saved, 2)  # closes our copy of the pipe's write end: the filter reads to its end
    NATIVE_FILTER.pop("thread").join(timeout=2)


def default_workers(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get("PREP_WORKERS", "1"))


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit flags win; otherwise the launcher's environment decides."""
    env_rank, env_world = rank_from_environment()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise PrepError(f"invalid rank {rank} for world size {world_size}")
    return rank, world_size
