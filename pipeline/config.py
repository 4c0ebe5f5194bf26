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

import dataclasses
import json
import os
import sys
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
    recipe: Any = None  # pipeline.recipes.AppliedRecipe of a --recipe run


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
