"""Checked-in descriptors of the datasets prep knows by name (layout, fps, language, sizes, defects)."""

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


@dataclass(frozen=True)
class Descriptor:
    name: str
    title: str
    language: str | None
    fps: float | None
    source_kind: str
    expected_split_sizes: dict[str, int] = field(default_factory=dict)
    known_defects: dict[str, str] = field(default_factory=dict)  # sample id -> what is wrong
    layout: dict[str, Any] = field(default_factory=dict)
    reader: str = ""  # "module:function" that reads the release into manifest candidates


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load_descriptor(name: str) -> Descriptor:
    path = HERE / f"{name}.toml"
    if not path.is_file():
        raise KeyError(f"no descriptor for dataset {name!r}; known: {', '.join(available())}")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    return Descriptor(
        name=raw["name"],
        title=raw["title"],
        language=raw.get("language"),
        fps=raw.get("fps"),
        source_kind=raw["source_kind"],
        expected_split_sizes=dict(raw.get("expected_split_sizes", {})),
        known_defects={d["id"]: d["defect"] for d in raw.get("known_defects", [])},
        layout=dict(raw.get("layout", {})),
        reader=raw.get("reader", ""),
    )
