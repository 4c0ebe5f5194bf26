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
- ``PREP_LOG_LEVEL``: DEBUG, INFO (default), WARNING, ERROR or CRITICAL.

A variable set to something else (``RANK=abc``) stops the run with one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
import math
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


# ``prep run``'s own settings: no stage may declare an option of these names
RUN_SETTINGS = frozenset(
    {"stage", "dataset", "root", "out", "config", "recipe", "rank", "world_size", "workers"}
    | {"overwrite", "quiet", "retries", "max_quarantine_share"}
)


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


@dataclasses.dataclass(frozen=True)
class ValueRule:
    """What one option accepts: its type (``int``, ``float``, ``bool``, ``str`` or ``Path``) and
    range, as its command-line flag declares them (:func:`pipeline.cli_options.value_rules`)."""

    kind: type
    minimum: float | None = None
    maximum: float | None = None


EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_option_values(
    options: Mapping[str, Any],
    rules: Mapping[str, ValueRule],
    defaults: Mapping[str, Any],
    flags: Mapping[str, Any] | None = None,
) -> None:
    """Every option in ``defaults`` holds a value of its flag's type and range, or None where
    its default is None; one that does not is one error line naming its flag (when ``flags``
    gave it) or its config key.

    Flags were converted by typer already; a file's values arrive as TOML/YAML/JSON typed them
    (``"false"`` is a string, ``1e400`` infinite), so each is checked, never coerced.
    """
    for key, value in options.items():
        rule = rules.get(key)
        if rule is None or key not in defaults or (value is None and defaults[key] is None):
            continue
        problem = value_problem(value, rule)
        if problem:
            given = (flags or {}).get(key) is not None
            raise PrepError(
                f"{'--' + key.replace('_', '-') if given else 'config key ' + key}: {problem}"
            )


def value_problem(value: Any, rule: ValueRule) -> str | None:
    """Why ``value`` does not fit ``rule``, or None."""
    if rule.kind is Path:
        fits_path = isinstance(value, (str, os.PathLike))
        return None if fits_path else f"expected a path, got {_shown(value)}"
    fits = isinstance(value, rule.kind) and (rule.kind is bool or not isinstance(value, bool))
    if rule.kind is float and isinstance(value, int) and not isinstance(value, bool):
        fits = True
    if not fits:
        return f"expected {EXPECTED.get(rule.kind, rule.kind.__name__)}, got {_shown(value)}"
    if rule.kind is float and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if rule.minimum is not None and value < rule.minimum:
        return f"expected at least {rule.minimum}, got {value!r}"
    if rule.maximum is not None and value > rule.maximum:
        return f"expected at most {rule.maximum}, got {value!r}"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def environment_number(
    env: Mapping[str, str], name: str, default: str, kind: type = int, minimum: float = 0
) -> Any:
    """``env[name]`` (or ``default``) as an int or a finite float of at least ``minimum``; a
    launcher or a user who set it to something else gets one line naming the variable."""
    text = env.get(name, default).strip()
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        expected = "an integer" if kind is int else "a number"
        raise PrepError(f"environment variable {name} must be {expected}, got {text!r}")
    if value < minimum:
        raise PrepError(f"environment variable {name} must be at least {minimum}, got {text!r}")
    return value


def rank_from_environment(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world_size) from torchrun/accelerate, else from a Slurm array, else (0, 1)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env:
        rank = environment_number(env, "RANK", "0")
        return rank, environment_number(env, "WORLD_SIZE", "1", minimum=1)
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = environment_number(env, "SLURM_ARRAY_TASK_MIN", "0")
        task = environment_number(env, "SLURM_ARRAY_TASK_ID", "0")
        return task - first, environment_number(env, "SLURM_ARRAY_TASK_COUNT", "1", minimum=1)
    return 0, 1


def launched_together(rank: int, world_size: int, env: Mapping[str, str] | None = None) -> bool:
    """Whether this rank belongs to a launch (accelerate, torchrun) whose ranks share a process group.

    Only when the launcher's ``RANK``/``WORLD_SIZE`` are the ones in use: explicit ``--rank`` flags
    that differ mean the ranks run apart.
    """
    env = os.environ if env is None else env
    if "MASTER_ADDR" not in env or environment_number(env, "WORLD_SIZE", "1") <= 1:
        return False
    return (rank, world_size) == rank_from_environment(env)


def local_rank_from_environment(env: Mapping[str, str] | None = None) -> int | None:
    env = os.environ if env is None else env
    return environment_number(env, "LOCAL_RANK", "") if env.get("LOCAL_RANK", "").strip() else None


def barrier_timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    return environment_number(env, "PREP_DIST_TIMEOUT", "86400", kind=float, minimum=1)


def lock_stale_seconds(env: Mapping[str, str] | None = None) -> float:
    """How long a lock of a rank on another host may go unrefreshed before it is taken over."""
    env = os.environ if env is None else env
    return environment_number(env, "PREP_LOCK_STALE_S", "600", kind=float, minimum=1)


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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    text = env.get("PREP_LOG_LEVEL", "INFO")
    if text.strip().upper() not in LOG_LEVELS:
        raise PrepError(
            f"environment variable PREP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {text!r}"
        )
    return text.strip().upper()


def default_workers(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return environment_number(env, "PREP_WORKERS", "1", minimum=1)


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit flags win; otherwise the launcher's environment decides. Every variable read
    here is checked now, before any work starts, though some are read later by workers."""
    env_rank, env_world = rank_from_environment()
    local_rank_from_environment()
    barrier_timeout_seconds()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise PrepError(f"invalid rank {rank} for world size {world_size}")
    return rank, world_size
