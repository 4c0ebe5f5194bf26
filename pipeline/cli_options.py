"""The stages' options as command-line options, generated from the registry.

Each field of a stage's options dataclass becomes one ``--flag`` (help from the field's
metadata, grouped under the stage's panel in ``--help``; an option several stages share is
grouped under all their names). ``run``, ``doctor`` and ``plan`` take the same generated options,
so their help cannot drift apart. Every generated option defaults to ``None``: unset flags fall
back to the ``--config`` file, then to the dataclass defaults (:func:`pipeline.config.merge_options`).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from typer.models import OptionInfo

from pipeline import registry
from pipeline.config import ValueRule
from pipeline.errors import PrepError
from pipeline.registry import StageOption


def panel(option: StageOption) -> str:
    if len(option.stages) == 1:
        return f"Stage {option.stages[0]}"
    return f"Shared by {', '.join(option.stages)}"


def declarations(option: StageOption) -> list[str]:
    if option.flag:
        return option.flag.split()
    dashed = option.name.replace("_", "-")
    return [f"--{dashed}/--no-{dashed}"] if option.kind is bool else [f"--{dashed}"]


def help_text(option: StageOption) -> str:
    """The help with the default and the accepted range; the range is checked with the
    stage's other rules (:func:`pipeline.stage.check_options`), so a value outside it is the
    same one ``prep: error:`` line from a flag as from a config file."""
    notes = []
    if not (option.default in (None, False, "") or "default" in option.help):
        notes.append(f"default: {option.default}")
    if option.low is not None or option.high is not None:
        low, high = ("" if v is None else v for v in (option.low, option.high))
        notes.append(f"range: {low}..{high}")
    if not notes:
        return option.help
    return f"{option.help.removesuffix('.')} ({'; '.join(notes)})."


def parameter(option: StageOption) -> inspect.Parameter:
    typed = Optional[option.kind]  # noqa: UP007 (typer reads this annotation)
    default = typer.Option(
        None,
        *declarations(option),
        help=help_text(option),
        rich_help_panel=panel(option),
    )
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=typed
    )


def with_stage_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` taking its own parameters plus every registered stage option as keywords.

    ``command`` declares ``**stage_options`` last; an option it declares itself (e.g. ``plan``'s
    ``out``) is left to it. The generated signature is what typer reads for ``--help``.
    """
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    taken = {p.name for p in own}
    try:
        stage_options = registry.options()
    except PrepError as exc:  # a broken plug-in: one line, not a traceback at import
        raise SystemExit(f"prep: error: {exc}") from None
    generated = [parameter(o) for name, o in stage_options.items() if name not in taken]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        return command(**values)

    wrapper.__signature__ = inspect.Signature(own + generated)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + generated}
    del wrapper.__wrapped__  # typer must see the generated signature, not the original one
    return wrapper


def value_rules(command: Callable[..., Any]) -> dict[str, ValueRule]:
    """What each option of ``command`` accepts, read from its typer declaration: the annotation's
    type (``Optional[int]`` -> int) and its ``min``/``max`` (a stage option's from its
    :func:`pipeline.stage.option`, which typer is not told). A config file's values are
    checked against these (:func:`pipeline.config.check_option_values`), so the file and the
    flags cannot accept different things."""
    rules = {}
    for parameter in inspect.signature(command, eval_str=True).parameters.values():
        kind = _plain_kind(parameter.annotation)
        if kind is None:
            continue
        option = parameter.default if isinstance(parameter.default, OptionInfo) else None
        low, high = (option.min, option.max) if option is not None else (None, None)
        declared = registry.options().get(parameter.name)  # a stage option: its own range
        if declared is not None:
            low, high = declared.low, declared.high
        rules[parameter.name] = ValueRule(kind, low, high)
    return rules


def _plain_kind(annotation: Any) -> type | None:
    """int, float, bool, str or Path from an annotation that may add ``Optional``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return Path
    return annotation if annotation in (int, float, bool, str) else None
