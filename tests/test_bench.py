"""bench/all.py: every script's records collected into one table; a failing script stays in it."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_runner():
    spec = importlib.util.spec_from_file_location("bench_all", REPO / "bench" / "all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bench_script_is_found_and_records_through_the_convention():
    runner = load_runner()
    names = [p.stem for p in runner.scripts()]
    assert {"decode", "pseudo_gloss", "features", "hands"} <= set(names)
    assert "all" not in names and "_results" not in names
    for script in runner.scripts():
        imports = [
            node
            for node in ast.walk(ast.parse(script.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "_results"
        ]
        assert any("record" in [a.name for a in node.names] for node in imports), script.name


def test_records_and_failures_both_reach_the_table(tmp_path):
    runner = load_runner()
    good = tmp_path / "good.py"
    good.write_text(
        'from _results import record\nprint("3 frames/s")\n'
        'record("good", "frames/s", "3 frames/s", "2 frames/s", 1.5, ">= 1.0")\n'
    )
    bad = tmp_path / "bad.py"
    bad.write_text('raise SystemExit("ffmpeg not found")\n')
    silent = tmp_path / "silent.py"
    silent.write_text('print("nothing recorded")\n')
    records = [r for script in (good, bad, silent) for r in runner.run_script(script, timeout=60)]
    assert records[0] == {
        "bench": "good",
        "measure": "frames/s",
        "prep": "3 frames/s",
        "baseline": "2 frames/s",
        "ratio": 1.5,
        "goal": ">= 1.0",
    }
    assert records[1]["bench"] == "bad" and "ffmpeg not found" in records[1]["measure"]
    assert records[1]["measure"].startswith("failed: exit status 1")
    assert records[2]["measure"].startswith("failed: recorded no figures")
    stamped = [{**r, "date": "2026-11-22", "machine": "test machine"} for r in records]
    table = runner.markdown(stamped)
    lines = table.splitlines()
    assert lines[0] == "| name | measure | prep | baseline | ratio | goal | date | machine |"
    assert (
        lines[2]
        == "| good | frames/s | 3 frames/s | 2 frames/s | 1.50 | >= 1.0 | 2026-11-22 | test machine |"
    )
    assert len(lines) == 5 and "| bad | failed: exit status 1: ffmpeg not found |" in lines[3]


def test_record_without_the_variable_writes_nothing(tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'bench'); from _results import record; "
        "record('x', 'm', '1 s', None, None, None); print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
        check=True,
    )
    assert done.stdout.strip() == "ok"
    target = tmp_path / "r.jsonl"
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin", "PREP_BENCH_JSON": str(target)},
    )
    assert json.loads(target.read_text()) == {
        "bench": "x",
        "measure": "m",
        "prep": "1 s",
        "baseline": None,
        "ratio": None,
        "goal": None,
    }


def test_readme_table_is_replaced_between_the_markers(tmp_path):
    runner = load_runner()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Benchmarks\n\n{runner.BEGIN}\nold\n{runner.END}\n\nprose stays\n")
    runner.update_readme(readme, "| new |\n")
    assert (
        readme.read_text()
        == f"# x\n\n## Benchmarks\n\n{runner.BEGIN}\n| new |\n{runner.END}\n\nprose stays\n"
    )


def test_a_partial_run_keeps_the_other_scripts_rows():
    runner = load_runner()
    old = [
        {"bench": b, "measure": m, "date": "2026-11-01"}
        for b, m in (("decode", "a"), ("hands", "b"), ("hands", "c"))
    ]
    new = [
        {"bench": "hands", "measure": "d", "date": "2026-11-22"},
        {"bench": "captions", "measure": "e", "date": "2026-11-22"},
    ]
    merged = runner.merge(old, new, {"hands", "captions"})
    assert [(r["bench"], r["measure"]) for r in merged] == [
        ("captions", "e"),
        ("decode", "a"),
        ("hands", "d"),
    ]
