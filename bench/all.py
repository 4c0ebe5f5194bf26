"""Run every benchmark script in bench/ and write their figures to one markdown table.

Each script runs in its own process with ``PREP_BENCH_JSON`` set (see ``bench/_results.py``);
its own output streams through unchanged. A script that fails, or records nothing, gets a row
that says so with its reason instead of silently dropping out. Every row carries the date and
machine it was measured on; with ``--only``, the rows of the other scripts are kept from the
last run (``bench/results.json``). The table goes to ``bench/RESULTS.md`` and, with
``--readme``, replaces the one between the ``<!-- bench:results -->`` markers in that file.

    python bench/all.py [--only decode,hands] [--readme README.md] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
RECORDS = BENCH / "results.json"  # the rows behind RESULTS.md, so a partial run keeps the others
BEGIN, END = "<!-- bench:results -->", "<!-- /bench:results -->"
COLUMNS = ("name", "measure", "prep", "baseline", "ratio", "goal", "date", "machine")
NOT_BENCHMARKS = {"all.py"}


def scripts(only: set[str] | None = None) -> list[Path]:
    """Every ``bench/<name>.py`` except helpers (``_*.py``) and this runner, in name order."""
    found = [
        p
        for p in sorted(BENCH.glob("*.py"))
        if not p.name.startswith("_") and p.name not in NOT_BENCHMARKS
    ]
    return [p for p in found if only is None or p.stem in only]


def machine() -> str:
    """CPU model and core count, the GPU when torch sees one, and the load average (figures from
    a machine busy with other work are noisier)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", {torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def run_script(script: Path, timeout: float) -> list[dict]:
    """Run one script; its records, or one row saying why it produced none."""
    with tempfile.TemporaryDirectory(prefix="prep-bench-") as tmp:
        target = Path(tmp) / "records.jsonl"
        path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
        env = {
            **os.environ,
            "PREP_BENCH_JSON": str(target),
            "PYTHONPATH": path,
        }  # _results importable
        print(f"== {script.stem}", flush=True)
        try:
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=REPO,
                env=env,
                timeout=timeout,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            reason = failure_reason(done.returncode, done.stderr)
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout:.0f} s"
        records = (
            [json.loads(line) for line in target.read_text().splitlines()]
            if target.is_file()
            else []
        )
    if reason:
        records.append(failed_row(script.stem, f"failed: {reason}"))
    elif not records:
        records.append(
            failed_row(script.stem, "failed: recorded no figures (see bench/_results.py)")
        )
    return records


def failure_reason(returncode: int, stderr: str) -> str | None:
    if returncode == 0:
        return None
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    return f"exit status {returncode}: {last[:200]}"


def failed_row(bench: str, reason: str) -> dict:
    return {
        "bench": bench,
        "measure": reason,
        "prep": None,
        "baseline": None,
        "ratio": None,
        "goal": None,
    }


def merge(previous: list[dict], new: list[dict], rerun: set[str]) -> list[dict]:
    """The new rows, plus the previous rows of scripts not rerun; grouped by script name."""
    kept = [r for r in previous if r["bench"] not in rerun]
    return sorted(kept + new, key=lambda r: r["bench"])  # stable: a script's rows keep their order


def markdown(records: list[dict]) -> str:
    def cell(value) -> str:
        if value is None:
            return "—"
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        if text == "1.00" and value != 1.0:
            text = f"{value:.3f}"  # 0.997 must not read as a goal of >= 1.0 met
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in records:
        values = (
            r["bench"],
            r["measure"],
            r["prep"],
            r["baseline"],
            r["ratio"],
            r["goal"],
            r["date"],
            r["machine"],
        )
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    """Replace the table between the markers; refuse (exit 1) when the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"bench/all.py: {readme} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table}{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma list of script names (default: every script)")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="markdown file to write (default: bench/RESULTS.md)",
    )
    parser.add_argument(
        "--readme", type=Path, help="also replace the table between the bench markers in this file"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds per script before it counts as failed"
    )
    args = parser.parse_args()
    chosen = scripts(set(args.only.split(",")) if args.only else None)
    if not chosen:
        raise SystemExit("bench/all.py: no benchmark script matches --only")
    stamp = {"date": datetime.date.today().isoformat(), "machine": machine()}  # load before the run
    new = [{**record, **stamp} for script in chosen for record in run_script(script, args.timeout)]
    previous = json.loads(RECORDS.read_text(encoding="utf-8")) if RECORDS.is_file() else []
    records = merge(previous, new, {script.stem for script in chosen})
    RECORDS.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    table = markdown(records)
    args.out.write_text(table, encoding="utf-8")
    if args.readme:
        update_readme(args.readme, table)
    print(f"\n{table}\nwritten to {args.out}")
    failed = [r["bench"] for r in new if str(r["measure"]).startswith("failed:")]
    if failed:
        raise SystemExit(f"bench/all.py: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
