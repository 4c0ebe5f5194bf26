"""``--recipe NAME``: a paper's settings under the config file and the flags, recorded in outputs.

Options merge as defaults < recipe < config file < flags, so a researcher can start from a paper
and change one thing; every key where the result differs from the recipe is recorded as
overridden (run record, table metadata, shard index), so nobody mistakes the run for the paper's.
What the recipe cannot choose (a model the user must place) is checked only for the stages that
run: ``--stage features --recipe beyondgloss`` does not ask for the captioner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

import recipes
from pipeline.config import load_config_file, merge_options
from pipeline.doctor import Check
from pipeline.errors import PrepError, handled_errors

RECIPE_KEY = "recipe"  # the option key (flag ``--recipe``, config file ``recipe = ...``)


@dataclasses.dataclass(frozen=True)
class AppliedRecipe:
    """Which recipe a run follows and every key where the run departs from it."""

    name: str
    title: str
    overridden: Mapping[str, Mapping[str, Any]]  # key -> {"recipe": value, "used": value}
    needs: tuple[recipes.Need, ...] = ()

    def record(self, own_keys: set[str] | None = None) -> dict[str, Any]:
        """The provenance entry; ``own_keys`` limits the overrides to one stage's options."""
        keys = sorted(k for k in self.overridden if own_keys is None or k in own_keys)
        return {
            "name": self.name,
            "title": self.title,
            "overridden": {k: dict(self.overridden[k]) for k in keys},
        }


def load(name: str) -> recipes.Recipe:
    try:
        return recipes.load_recipe(name)
    except KeyError as exc:
        raise PrepError(str(exc.args[0])) from None
    except (ValueError, TypeError) as exc:  # a malformed user recipe file
        raise PrepError(f"recipe {name!r} cannot be read: {exc}") from None


def merged_options(
    flags: Mapping[str, Any], config: Path | None, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """defaults < recipe < config file < flags; ``options["recipe"]`` is the AppliedRecipe or None."""
    file_options = load_config_file(config) if config else {}
    name = flags.get(RECIPE_KEY) or file_options.pop(RECIPE_KEY, None)
    given = {k: v for k, v in flags.items() if k != RECIPE_KEY}
    if not name:
        return {**merge_options(given, file_options, defaults), RECIPE_KEY: None}
    recipe = load(name)
    unknown = sorted(set(recipe.options) - set(defaults))
    if unknown:
        raise PrepError(f"recipe {recipe.name} sets unknown option(s): {', '.join(unknown)}")
    options = merge_options(given, file_options, {**defaults, **recipe.options})
    overridden = {
        key: {"recipe": value, "used": options[key]}
        for key, value in recipe.options.items()
        if options[key] != value
    }
    options[RECIPE_KEY] = AppliedRecipe(recipe.name, recipe.title, overridden, recipe.needs)
    return options


def applicable_needs(options: Mapping[str, Any], stages: list[str]) -> list[recipes.Need]:
    """The recipe's needs that the chosen stages, with these options, really have."""
    applied = options.get(RECIPE_KEY)
    if applied is None:
        return []
    needs = []
    for need in applied.needs:
        if need.stage not in stages:
            continue
        if need.when:
            listed = str(options.get(need.when[0]) or "").split(",")
            if need.when[1] not in (item.strip() for item in listed):
                continue
        needs.append(need)
    return needs


def require_needs(options: Mapping[str, Any], stages: list[str]) -> None:
    """One line naming the first missing input the recipe needs for these stages."""
    for need in applicable_needs(options, stages):
        if options.get(need.option) in (None, ""):
            flag = "--" + need.option.replace("_", "-")
            raise PrepError(
                f"--recipe {options[RECIPE_KEY].name} needs {flag} for {need.stage}: {need.what}"
            )


def doctor_checks(options: Mapping[str, Any], stages: list[str]) -> list[Check]:
    """``prep doctor --recipe``: one line per input the recipe needs, with where it goes."""
    checks = []
    for need in applicable_needs(options, stages):
        value = options.get(need.option)
        flag = "--" + need.option.replace("_", "-")
        checks.append(
            Check(
                area="recipe",
                component=flag,
                ok=value not in (None, ""),
                detail=str(value) if value not in (None, "") else need.what,
                needed=True,
                fix=f"give {flag} PATH ({need.stage}): {need.what}",
            )
        )
    return checks


def list_recipes(
    name: str = typer.Argument(None, help="Show this recipe's settings and needs."),
) -> None:
    """The recipes that reproduce a paper's inputs (``prep run --recipe NAME``)."""
    with handled_errors():
        if name is None:
            for known in recipes.available():
                recipe = load(known)
                typer.echo(f"{recipe.name:<12} {recipe.title:<26} {recipe.code}")
            return
        recipe = load(name)
        typer.echo(f"{recipe.name}: {recipe.title}\ncode: {recipe.code}\nfile: {recipe.path}")
        typer.echo("options (flags and --config win):")
        for key, value in recipe.options.items():
            typer.echo(f"  --{key.replace('_', '-')} = {value!r}")
        for need in recipe.needs:
            when = f" (when --{need.when[0]} lists {need.when[1]})" if need.when else ""
            typer.echo(
                f"needs --{need.option.replace('_', '-')} for {need.stage}{when}: {need.what}"
            )
        for difference in recipe.differences:
            typer.echo(f"differs from the paper: {difference}")
