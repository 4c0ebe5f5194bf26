"""The stage contract: what a stage declares and implements, and all the framework knows of it.

A stage is a class registered under the ``prep.stages`` entry point (:mod:`pipeline.registry`).
It declares its name, version, options (a frozen dataclass whose fields carry their CLI help,
see :func:`option`), the stages whose outputs it reads (``requires``), the per-sample columns it
exports to others (:class:`Export`) and its cost unit for ``prep plan``; it implements ``plan``,
``run`` and ``finalize``, and may add doctor checks, report sections and verify checks. The
runner, CLI, status, verify, report, doctor and plan only iterate the registry: adding a stage
edits no framework file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.config import RunConfig
from pipeline.contract import (
    MISSING,
    PER_CLIP,
    PER_FRAME,
    Check,
    FrameReader,
    RunOutputs,
    Section,
    SplitReport,
)
from pipeline.journal import UnitJournal
from pipeline.layout import Layout
from pipeline.storage import canonical_json


@dataclass(frozen=True)
class WorkUnit:
    """A fixed slice of one split: small JSON-able items (ids, paths), never decoded data."""

    split: str
    index: int
    items: tuple[dict[str, Any], ...]

    @property
    def id(self) -> str:
        return f"{self.split}/{self.index:05d}"

    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(list(self.items)).encode()).hexdigest()


def slice_units(split: str, rows: list[dict[str, Any]], size: int) -> list[WorkUnit]:
    """A split's rows cut into units of ``size`` (the last one shorter), numbered from 0."""
    return [
        WorkUnit(split, i, tuple(rows[b : b + size]))
        for i, b in enumerate(range(0, len(rows), size))
    ]


@dataclass(frozen=True)
class Planned:
    """What ``plan`` found: the units, and a frozen context (e.g. the corpus's base folder) that
    the runner hands to every ``run`` and to ``finalize``, in this process or a worker's."""

    units: list[WorkUnit]
    context: Any = None


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    runtime: bool = False,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A field of a stage's options dataclass, with what ``prep run --help`` shows for it.

    ``flag`` overrides the generated declaration (e.g. ``"--deep-check/--spot-check"``);
    ``runtime`` marks options that never change outputs (batch sizes): they are not part of
    the configuration hash, so changing them does not make finished units stale. ``min``,
    ``max`` and ``choices`` are the values it accepts: the flag, a config file and the
    constructed options are all held to them (:func:`check_options`); a rule between several
    fields goes in the dataclass's ``__post_init__``, raising ``ValueError`` with one line.
    """
    metadata = {"help": help, "flag": flag, "runtime": runtime}
    metadata.update(min=min, max=max, choices=choices)
    return dataclasses.field(default=default, metadata=metadata)


def check_options(options: Any) -> None:
    """Every field of a constructed options dataclass within its declared ``min``/``max`` and
    among its ``choices`` (``None`` stays allowed where it is the default); ``ValueError``
    naming the flag otherwise. :func:`pipeline.registry.build` calls it for every stage."""
    for field in dataclasses.fields(options):
        value, rules = getattr(options, field.name), field.metadata
        if value is None or isinstance(value, bool):
            continue
        flag = "--" + field.name.replace("_", "-")
        low, high, choices = rules.get("min"), rules.get("max"), rules.get("choices")
        if low is not None and value < low or high is not None and value > high:
            span = f"{'' if low is None else low}..{'' if high is None else high}"
            raise ValueError(f"{flag} must be in {span}, got {value!r}")
        if choices and value not in choices:
            raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


# keys of a shard sample's json that the packing stage writes itself: no stage may export them
SAMPLE_KEYS = ("frame_indices", "frame_times", "fields", MISSING, "provenance")


@dataclass(frozen=True)
class ArrayColumn:
    """An exported column that every shard sample holds as its own ``<column>.npy`` field, in
    ``dtype``: ``per="clip"`` any shape (a caption embedding), ``per="frame"`` first axis = the
    clip's selected frames (what :func:`pipeline.video.sample_frames` yields), which the loader
    pads and loads by default and verify counts. Build with :func:`per_clip`/:func:`per_frame`."""

    column: str
    per: str = PER_CLIP
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.per not in (PER_CLIP, PER_FRAME):
            raise ValueError(f"array column {self.column}: per must be clip or frame")
        if np.dtype(self.dtype).kind not in "fiub":
            raise ValueError(f"array column {self.column}: dtype {self.dtype} is not numeric")
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)  # "f4" -> "float32"

    @property
    def field(self) -> str:
        """The shard field: one rule for every stage, so loaders and verify find it."""
        return f"{self.column}.npy"


def per_clip(column: str, dtype: str = "float32") -> ArrayColumn:
    """An exported array of any shape, one per clip (e.g. a caption's embedding)."""
    return ArrayColumn(column, PER_CLIP, dtype)


def per_frame(column: str, dtype: str = "float32") -> ArrayColumn:
    """An exported array whose first axis is the clip's selected frames."""
    return ArrayColumn(column, PER_FRAME, dtype)


@dataclass(frozen=True)
class Export:
    """Per-sample columns of a stage's ``<split>.parquet`` (keyed by ``id``) that other stages
    read through the registry and the features stage packs into every shard sample: ``columns``
    go into the sample's json as they are; ``arrays`` (:func:`per_clip`, :func:`per_frame`)
    become ``<column>.npy`` fields in their dtype. A sample whose row an upstream stage
    quarantined keeps its place in the shards: its json columns are ``null``, its array fields
    absent, and its json's ``missing`` names each such column with the upstream reason."""

    columns: tuple[str, ...]
    arrays: tuple[ArrayColumn, ...] = ()

    def __post_init__(self) -> None:
        arrays = tuple(_array_column(a) for a in self.arrays)
        object.__setattr__(self, "arrays", arrays)
        named = [a.column for a in arrays]
        taken = sorted(set(self.columns) & set(SAMPLE_KEYS))
        if taken:
            raise ValueError(f"Export: {', '.join(taken)} is a key prep writes in every sample")
        if len(set(named)) != len(named):
            raise ValueError(f"Export: an array column is declared twice in {named}")
        extra = tuple(c for c in named if c not in self.columns)
        object.__setattr__(self, "columns", tuple(self.columns) + extra)


def _array_column(declared: Any) -> ArrayColumn:
    """An :class:`ArrayColumn`; the older ``(column, "column.npy")`` pair reads as per clip."""
    if isinstance(declared, ArrayColumn):
        return declared
    column, field = declared
    if field != f"{column}.npy":
        raise ValueError(
            f"Export: array column {column} would be stored as {field}; shard fields are named "
            f"<column>.npy by the framework: declare per_clip({column!r}) or per_frame({column!r})"
        )
    return per_clip(column)


def hook(target: str) -> Any:
    """A class-method hook implemented as ``module:function`` elsewhere, imported only when
    called: ``prep doctor`` and ``prep report`` load no run-time code, and a stage's run loads
    no report code. ``doctor_checks = hook("mylab.checks:doctor_checks")``."""
    module, _, function = target.partition(":")

    def call(cls: type, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    call.__doc__ = f"Implemented by {target}."
    return classmethod(call)


class Stage(ABC):
    """A stage is options + ``plan`` + ``run`` + ``finalize`` and a version bumped on meaning changes."""

    name: ClassVar[str]
    version: ClassVar[int]
    options_class: ClassVar[type]
    requires: ClassVar[tuple[str, ...]] = ()  # stages whose outputs this one reads
    exports: ClassVar[Export | None] = None  # per-sample columns for other stages and shards
    collects_exports: ClassVar[bool] = False  # runs after every stage with exports, reads them
    writes_manifest: ClassVar[bool] = False  # the one stage whose tables are the manifest
    position: ClassVar[int] = 100  # order among stages the dependencies leave free
    uses_gpu: ClassVar[bool] = False  # loads models: ``prep launch slurm`` asks GPUs for it
    cost_unit: ClassVar[str] = "frame"  # what ``prep plan`` counts: "frame" or "clip"
    piloted: ClassVar[bool] = True  # False: ``prep plan`` uses the stage's own unit timings
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions ``prep doctor`` lists
    summary_highlights: ClassVar[tuple[str, ...]] = ()  # summary keys ``prep run`` prints
    commands: ClassVar[tuple[tuple[str, Callable[..., Any]], ...]] = ()  # extra CLI commands

    def __init__(self, options: Any, run: RunConfig) -> None:
        self.options = options
        self.run_config = run
        self.layout = Layout(run.out)

    @classmethod
    def runtime_options(cls) -> tuple[str, ...]:
        """Options that never change outputs (not hashed)."""
        return tuple(
            f.name for f in dataclasses.fields(cls.options_class) if f.metadata.get("runtime")
        )

    def options_dict(self) -> dict[str, Any]:
        return asdict(self.options)

    def config_hash(self) -> str:
        """Names the settings that decide outputs: stage, version and the non-runtime options."""
        runtime = self.runtime_options()
        options = {k: v for k, v in self.options_dict().items() if k not in runtime}
        identity = {"stage": self.name, "version": self.version, "options": options}
        recipe = self.recipe_record()
        if recipe is not None:  # outputs name the recipe, so a recipe run is its own config
            identity["recipe"] = recipe
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]

    def recipe_record(self) -> dict[str, Any] | None:
        """The recipe this run follows and this stage's keys that depart from it (or None)."""
        applied = self.run_config.recipe
        if applied is None:
            return None
        return applied.record({f.name for f in dataclasses.fields(self.options_class)})

    def unit_journal(self, unit: WorkUnit) -> UnitJournal:
        """The journal of a unit in progress; one made with other settings or inputs is ignored."""
        return UnitJournal(
            self.layout.unit_journal(self.name, unit.id),
            {"config": self.config_hash(), "input": unit.fingerprint()},
        )

    def is_complete(self) -> bool:
        """Whether this stage's merged outputs exist (used to run prerequisites first)."""
        return self.layout.summary(self.name).is_file()

    @abstractmethod
    def plan(self) -> Planned:
        """The deterministic partition of the work; the same inputs give the same units."""

    @abstractmethod
    def run(self, unit: WorkUnit, workdir: Path, context: Any) -> dict[str, int]:
        """Process one unit, writing its outputs into ``workdir``; returns counts for the stats."""

    @abstractmethod
    def finalize(self, units: list[WorkUnit], context: Any) -> dict[str, Any]:
        """Merge all committed units into the stage's outputs; returns the summary."""

    # -- hooks of the commands around a run (class methods: they build no stage) -------------
    @classmethod
    def doctor_checks(cls, options: Mapping[str, Any], needed: bool) -> list[Check]:
        """What this stage needs on this machine for ``options`` (``prep doctor``); loads nothing."""
        return []

    @classmethod
    def demo_options(cls, models: Path) -> dict[str, Any]:
        """Options that let ``prep demo`` run this stage offline (it may write tiny models
        under ``models``), e.g. a randomly initialised encoder instead of real weights."""
        return {}

    @classmethod
    def report_sections(
        cls, outputs: RunOutputs, frames: FrameReader, clips: int
    ) -> list[Section] | None:
        """This stage's part of ``prep report``; None: the framework's generic summary table."""
        return None

    @classmethod
    def report_provenance(cls, outputs: RunOutputs) -> dict[str, Any]:
        """The provenance this stage recorded in its outputs (default: its tables' metadata)."""
        return outputs.table_provenance(cls.name)

    @classmethod
    def verify(cls, layout: Layout) -> list[SplitReport]:
        """Re-read this stage's published outputs (``prep verify``); one report per split."""
        return []
