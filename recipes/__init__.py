"""Recipes: one TOML file per paper that sets every option the paper's released code fixes.

A recipe names its source (``title``, ``code``), the option values (``[options]``, each with a
comment citing the file and line of the paper's code) and the inputs it cannot choose for the
user (``[[needs]]``: a model or vector file the user must place, only checked when the stage
that reads it runs). ``prep run --recipe NAME`` applies it under the config file and the flags,
which still win; :mod:`pipeline.recipes` does the merging and records it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).parent
REQUIRED_KEYS = ("name", "title", "code")
NEED_KEYS = ("option", "stage", "what")


@dataclass(frozen=True)
class Need:
    """An option the user must give when ``stage`` runs (and, with ``when``, only when the comma
    list option ``when[0]`` holds ``when[1]``), e.g. a model folder the recipe cannot ship."""

    option: str
    stage: str
    what: str
    when: tuple[str, str] | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    code: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    needs: tuple[Need, ...] = ()
    differences: tuple[str, ...] = ()  # what prep cannot reproduce offline, said to the user


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def recipe_path(name: str) -> Path:
    """A packaged recipe by name, or a user's own recipe file by path."""
    if name in available():
        return HERE / f"{name}.toml"
    path = Path(name).expanduser()
    if path.suffix == ".toml" and path.is_file():
        return path
    raise KeyError(f"no recipe {name!r}; known: {', '.join(available())} (or a path to a .toml)")


def load_recipe(name: str) -> Recipe:
    path = recipe_path(name)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    lacking = [key for key in REQUIRED_KEYS if key not in raw]
    lacking += [f"needs.{k}" for need in raw.get("needs", []) for k in NEED_KEYS if k not in need]
    if lacking:
        raise ValueError(f"{path} lacks {', '.join(lacking)}")
    needs = []
    for need in raw.get("needs", []):
        when = need.get("when")
        needs.append(
            Need(
                option=need["option"],
                stage=need["stage"],
                what=need["what"],
                when=tuple(when.split(":", 1)) if when else None,
            )
        )
    return Recipe(
        name=raw["name"],
        title=raw["title"],
        code=raw["code"],
        path=path,
        options=dict(raw.get("options", {})),
        needs=tuple(needs),
        differences=tuple(raw.get("differences", [])),
    )
