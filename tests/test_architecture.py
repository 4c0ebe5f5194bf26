"""The framework knows stages only through the registry: checked on the source itself, so a
shortcut (an import of a stage, a stage's name or output column spelled in ``pipeline/``, an
import circle, a module grown past one sitting) fails here rather than in review."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from pipeline import registry
from tests.conftest import REPO

MAX_LINES = 400
PACKAGES = ("pipeline", "stages", "exporters", "recipes")


def modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def runtime_imports(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement, in functions too, except those under ``if TYPE_CHECKING:``."""
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only
    ]


def imported_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def test_the_framework_never_imports_a_stage_or_an_exporter():
    offending = [
        f"{name}: {ast.unparse(node)}"
        for name, path in modules("pipeline").items()
        for node in runtime_imports(ast.parse(path.read_text()))
        if any(n.split(".")[0] in ("stages", "exporters") for n in imported_names(node))
    ]
    assert not offending


def test_the_framework_spells_no_stage_name_or_exported_column():
    """The manifest's columns are the framework's own schema (pipeline/manifest.py); every other
    stage's name, exported columns and shard fields come only through the registry."""
    stages = registry.registered().values()
    forbidden = {s.name for s in stages}
    for stage in stages:
        if stage.exports is not None and not stage.writes_manifest:
            forbidden |= set(stage.exports.columns)
            forbidden |= {array.field for array in stage.exports.arrays}
    offending = [
        f"{name}:{node.lineno}: {node.value!r}"
        for name, path in modules("pipeline").items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in forbidden
    ]
    assert not offending


def every_import(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement: in functions and under ``if TYPE_CHECKING:`` too. A circle hidden
    in a function or an annotation is still a circle between the modules' meanings."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_no_module_imports_itself_through_others():
    names = {name: path for package in PACKAGES for name, path in modules(package).items()}
    graph = {}
    for name, path in names.items():
        targets = set()
        for node in every_import(ast.parse(path.read_text())):
            targets |= {n for n in imported_names(node) if n in names and n != name}
        graph[name] = targets
    circles = strongly_connected(graph)
    assert not circles, circles


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module: each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_reads_in_one_sitting():
    long = [
        f"{path.relative_to(REPO)}: {lines} lines"
        for package in PACKAGES
        for path in modules(package).values()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert not long


def test_every_registered_stage_declares_its_contract():
    for stage in registry.registered().values():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", stage.name), stage.name
        assert isinstance(stage.version, int) and stage.version >= 1
        assert stage.cost_unit in ("clip", "frame")
        params = stage.options_class.__dataclass_params__
        assert params.frozen, f"{stage.name}: options must be a frozen dataclass"
        for field in dataclasses.fields(stage.options_class):
            assert field.metadata.get("help"), f"{stage.name}: option {field.name} has no help"
    assert registry.manifest_stage().name in registry.names()
