"""The stage registry: every stage comes in through the ``prep.stages`` entry point, the built-in
ones as much as a lab's own (``[project.entry-points."prep.stages"] clip = "mylab.clip:ClipStage"``).

The framework knows stages only through this module: their order (dependencies first), their
options (merged into one namespace: an option several stages declare must agree on its type
and default), the stage that writes the manifest and the stages that export columns.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config import RUN_SETTINGS, RunConfig
from pipeline.errors import PrepError
from pipeline.stage import Stage, check_options

ENTRY_POINT_GROUP = "prep.stages"
OWN_DISTRIBUTION = "prep"  # the built-in stages' distribution


@dataclass(frozen=True)
class StageOption:
    """One option as the CLI offers it: its Python type, default, help and the stages using it."""

    name: str
    kind: type
    default: Any
    help: str
    flag: str | None
    stages: tuple[str, ...]
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def declaration(self) -> tuple:
        """What several stages sharing the option must declare alike."""
        return (self.kind, self.default, self.help, self.flag, self.low, self.high, self.choices)


@functools.cache
def registered() -> dict[str, type[Stage]]:
    """Every usable installed stage by name, in the order ``--stage all`` runs them. A plug-in
    that fails to import or validate is left out and listed by :func:`broken`: one lab's broken
    package must not stop ``prep status`` on runs that never used it."""
    found: dict[str, type[Stage]] = {}
    sources: dict[str, str] = {}
    owners: dict[str, str] = {}  # stage -> "distribution NAME"
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            stage = _load(entry)
        except PrepError as exc:
            _BROKEN[entry.name] = f"{_distribution(entry)}: {exc}"
            continue
        if stage.name in found and found[stage.name] is not stage:
            raise PrepError(
                f"two packages register stage {stage.name!r}: {sources[stage.name]} and {entry.value}"
            )
        found[stage.name], sources[stage.name] = stage, entry.value
        owners[stage.name] = _distribution(entry)
    if not found:
        raise PrepError(
            f"no stage is registered under the {ENTRY_POINT_GROUP!r} entry point; "
            "reinstall prep (pip install -e .)"
        )
    return {name: found[name] for name in _order_leaving_out_circles(_usable(found), owners)}


def _order_leaving_out_circles(found: dict[str, type[Stage]], owners: dict[str, str]) -> list[str]:
    """The run order; plug-in stages caught in a circle are left out (broken, one line each),
    as a plug-in that fails to import is. A circle among prep's own stages is prep's bug."""
    try:
        return _run_order(found)
    except StageCircle as circle:
        plugins = [n for n in circle.stages if owners[n] != f"distribution {OWN_DISTRIBUTION}"]
        if not plugins:
            raise
        for name in plugins:
            _BROKEN[name] = f"{owners[name]}: {circle}"
        return _order_leaving_out_circles(
            _usable({k: v for k, v in found.items() if k not in plugins}), owners
        )


class StageCircle(PrepError):
    """Stages that wait for each other; ``stages`` names them."""

    def __init__(self, message: str, stages: list[str]) -> None:
        super().__init__(message)
        self.stages = stages


_BROKEN: dict[str, str] = {}  # entry point name -> "distribution: why", filled by registered()


def broken() -> dict[str, str]:
    """Plug-in stages left out because they fail to import or validate: name -> one line."""
    registered()
    return dict(_BROKEN)


def _distribution(entry: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"distribution {dist.name}" if dist is not None else f"entry point {entry.value}"


def _usable(found: dict[str, type[Stage]]) -> dict[str, type[Stage]]:
    """Stages whose requirements are all usable (a stage needing a broken one is broken too)."""
    while True:
        lacking = {
            name: [r for r in stage.requires if r not in found] for name, stage in found.items()
        }
        lacking = {name: missing for name, missing in lacking.items() if missing}
        if not lacking:
            return found
        for name, missing in lacking.items():
            why = "unusable" if any(m in _BROKEN for m in missing) else "not installed"
            _BROKEN[name] = (
                f"{found[name].__module__}: requires {', '.join(missing)}, which is {why}"
            )
            found = {k: v for k, v in found.items() if k != name}


def _load(entry: importlib.metadata.EntryPoint) -> type[Stage]:
    try:
        stage = entry.load()
    except Exception as exc:  # whatever a lab's module raises on import
        raise PrepError(
            f"stage entry point {entry.name} = {entry.value} fails to import: "
            f"{type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    if not (isinstance(stage, type) and issubclass(stage, Stage)):
        raise PrepError(f"stage entry point {entry.name} = {entry.value} is not a Stage subclass")
    for attribute in ("name", "version", "options_class"):
        if not hasattr(stage, attribute):
            raise PrepError(f"stage {entry.value} does not set {attribute}")
    if not dataclasses.is_dataclass(stage.options_class):
        raise PrepError(f"stage {stage.name}: options_class must be a dataclass")
    return stage


def _run_order(stages: Mapping[str, type[Stage]]) -> list[str]:
    """Dependencies first; a stage collecting exports after every exporter; then by position."""
    exporters = {name for name, s in stages.items() if s.exports is not None}
    before: dict[str, set[str]] = {}
    for name, stage in stages.items():
        missing = [r for r in stage.requires if r not in stages]
        if missing:
            raise PrepError(
                f"stage {name} requires {', '.join(missing)}, which no installed package registers"
            )
        before[name] = set(stage.requires) | (
            exporters - {name} if stage.collects_exports else set()
        )
    order: list[str] = []
    while len(order) < len(stages):
        ready = [n for n in stages if n not in order and before[n] <= set(order)]
        if not ready:
            waiting = _in_circles({n: before[n] for n in stages if n not in order})
            raise StageCircle(
                "stages depend on each other in a circle: "
                + "; ".join(_waits(stages[n], before[n] & set(waiting)) for n in waiting),
                waiting,
            )
        order.append(min(ready, key=lambda n: (stages[n].position, n)))
    return order


def _in_circles(before: dict[str, set[str]]) -> list[str]:
    """The stages of ``before`` (stage -> what it waits for) that some other of them waits
    for, repeatedly: what is left are the circles, not the stages merely after them."""
    left = set(before)
    while True:
        awaited = {d for n in left for d in before[n]} & left
        if awaited == left:
            return sorted(left)
        left = awaited


def _waits(stage: type[Stage], on: set[str]) -> str:
    """What one stage of a circle waits for, each edge named by where it comes from."""
    edges = [
        f"requires {name}" if name in stage.requires else f"collects the exports of {name}"
        for name in sorted(on)
    ]
    return f"{stage.name} {' and '.join(edges)}"


def names() -> list[str]:
    return list(registered())


def get(name: str) -> type[Stage]:
    stages = registered()
    if name in broken():
        raise PrepError(f"stage {name} is unusable: {_BROKEN[name]}")
    if name not in stages:
        raise PrepError(f"unknown stage {name!r}; choose one of {', '.join(stages)}")
    return stages[name]


def resolve(stage: str) -> list[str]:
    """The stages a ``--stage`` value names: one, or ``all`` of them in run order."""
    if stage == "all":
        if broken():
            name, why = next(iter(broken().items()))
            raise PrepError(f"--stage all needs every stage; {name} is unusable: {why}")
        return names()
    if stage in broken():
        raise PrepError(f"stage {stage} is unusable: {_BROKEN[stage]}")
    if stage not in registered():
        raise PrepError(f"unknown stage {stage!r}; choose one of {', '.join(names())} or all")
    return [stage]


def manifest_stage() -> type[Stage]:
    """The stage whose per-split tables are the manifest every other stage reads."""
    writers = [s for s in registered().values() if s.writes_manifest]
    if len(writers) != 1:
        found = ", ".join(s.name for s in writers) or "none"
        raise PrepError(f"exactly one stage must write the manifest; registered: {found}")
    return writers[0]


def exporting_stages() -> list[type[Stage]]:
    """Stages whose per-sample columns others read (:class:`pipeline.stage.Export`); not to be
    confused with the ``prep.exporters`` plug-ins, which write a trainer's files."""
    return [s for s in registered().values() if s.exports is not None]


@functools.cache
def options() -> dict[str, StageOption]:
    """Every stage's options by name; one declared by several stages must agree."""
    merged: dict[str, StageOption] = {}
    for stage in registered().values():
        hints = typing.get_type_hints(stage.options_class)
        for field in dataclasses.fields(stage.options_class):
            current = StageOption(
                field.name,
                _plain_type(hints[field.name], stage.name, field.name),
                field.default,
                field.metadata.get("help", ""),
                field.metadata.get("flag"),
                (stage.name,),
                field.metadata.get("min"),
                field.metadata.get("max"),
                field.metadata.get("choices"),
            )
            if field.name in RUN_SETTINGS:
                raise PrepError(
                    f"option {field.name} of stage {stage.name} ({stage.__module__}) is a run "
                    f"setting of prep itself (prep run --{field.name.replace('_', '-')}); "
                    "a stage cannot declare it: rename the stage's option"
                )
            known = merged.get(field.name)
            if known is None:
                merged[field.name] = current
                continue
            if known.declaration() != current.declaration():
                raise PrepError(
                    f"option {field.name} is declared by {', '.join(known.stages)} "
                    f"({_described(known)}) and by {stage.name} ({_described(current)}); "
                    "a shared option needs one type, default, help and range: rename one"
                )
            merged[field.name] = dataclasses.replace(known, stages=known.stages + (stage.name,))
    return merged


def _described(option: StageOption) -> str:
    found = f"{option.kind.__name__}, default {option.default!r}, help {option.help[:40]!r}"
    if option.low is not None or option.high is not None or option.choices:
        found += f", range {option.low}..{option.high}, choices {option.choices}"
    return found


def _plain_type(hint: Any, stage: str, field: str) -> type:
    """``int``, ``float``, ``str`` or ``bool`` from a hint that may add ``| None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if hint not in (int, float, str, bool):
        raise PrepError(
            f"stage {stage}: option {field} must be int, float, str or bool, got {hint}"
        )
    return hint


def option_defaults() -> dict[str, Any]:
    return {name: o.default for name, o in options().items()}


def build(name: str, values: Mapping[str, Any], run: RunConfig) -> Stage:
    """A stage constructed from merged option values (missing ones take their defaults)."""
    stage = get(name)
    fields = dataclasses.fields(stage.options_class)
    try:
        chosen = stage.options_class(**{f.name: values[f.name] for f in fields if f.name in values})
        check_options(chosen)
    except (TypeError, ValueError) as exc:
        raise PrepError(f"invalid options for stage {name}: {exc}") from exc
    return stage(chosen, run)
