"""Run the benchmark suite on several Pythons and tabulate the ratios side by side.

    python benchmarks/across.py [3.9 3.10 ...]   (default: 3.9 to 3.15)
    python benchmarks/across.py --tables-only    (the tables again, from the last runs)

For each version, a venv under build/bench/ gets both eras (the 0.12 one only where it
is the only choice, i.e. everywhere; the modern one from 3.9) built for that interpreter,
and ``bench.py`` writes ``build/bench/results-X.Y.json``. The interpreters are found as
``pythonX.Y`` on PATH (``tools/dev test`` puts them there; so does ``tools/pythons.sh``).
Then the ratios of every run go into one markdown table, and each target of the
performance issue is checked against them in another: ``build/bench/`` and
``docs/src/generated/`` get ``benchmarks-across.md`` and ``targets.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
DEFAULT = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]


def venv_for(version: str) -> str | None:
    """The python of ``build/bench/venv-X.Y``, with both eras freshly built for it."""
    python = shutil.which(f"python{version}")
    if python is None:
        print(f"python{version} not found on PATH: skipped", file=sys.stderr)
        return None
    venv = BUILD / f"venv-{version}"
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "pytest", "pytest-benchmark"],
                   check=True)
    env = {**os.environ, "CARGO_TARGET_DIR": str(ROOT / "target" / "bench")}
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
         str(ROOT / "pyo3-0.12-pyproto"), str(ROOT / "pyo3-modern-pymethods")],
        check=True, env=env,
    )
    return py


def run(version: str) -> Path | None:
    py = venv_for(version)
    if py is None:
        return None
    out = BUILD / f"results-{version}.json"
    subprocess.run([py, str(ROOT / "benchmarks" / "bench.py"), "--json", str(out)], check=True)
    return out


def load(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """The reports of ``bench.py``, and the Python version of each."""
    reports = [json.loads(p.read_text()) for p in paths]
    return reports, [r["python"] for r in reports]


def header(text: str, first: str, versions: list[str], align: str) -> list[str]:
    """The lines of a table's introduction and header, one column per version."""
    return [text, "", f"| {first} | " + " | ".join(versions) + " |",
            "|---|---|" + f"{align}|" * len(versions)]


def table(paths: list[Path]) -> str:
    reports, versions = load(paths)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for report in reports:
        for row in report["results"]:
            if row["name"] == row["baseline"]:
                continue
            cell = f"{row['ratio']:.2f}×"
            rows.setdefault((row["group"], row["name"]), {})[report["python"]] = cell
    lines = header("Ratio to the native baseline of the same run, per CPython version (one "
                   "run each, best of 5 rounds; < 1 is faster than native):",
                   "benchmark | implementation", versions, "---:")
    for (group, name), cells in rows.items():
        lines.append(f"| {group} | `{name}` | "
                     + " | ".join(cells.get(v, "—") for v in versions) + " |")
    return "\n".join(lines) + "\n"


# The performance issue's targets: (what, benchmark group, implementation suffix, baseline
# (None: the group's native baseline), limit for 3.10/3.11, limit elsewhere, "ratio" (at
# most the limit) or "gain" (the baseline at least `limit` times the implementation)).
TARGETS = [
    ("await of a ready value", "await of a ready value", ".ready", None, 1.00, 1.5, "ratio"),
    ("one suspension through `delegate`, stepped from C", "one suspension, delegated, stepped from C",
     ".delegate", None, 1.3, 1.3, "ratio"),
    ("one suspension through `delegate`, stepped by `send()`", "one suspension, delegated",
     ".delegate", None, 1.3, 1.3, "ratio"),
    ("`create_task` of a `RustCoroutine`", "create_task and run it", ".ready", None, 1.00, 1.00,
     "ratio"),
    ("`sleep(0)`: times less than `future_into_py`", "sleep(0) round trip, sequential", ".sleep",
     "pyo3_modern_pymethods.baselines.sleep_future_into_py", 10, 10, "gain"),
    ("`sleep(0)`: times less than PyO3 `async fn`", "sleep(0) round trip, sequential", ".sleep",
     "pyo3_modern_pymethods.baselines.sleep_async_fn", 2, 2, "gain"),
    ("10,000 gathered `sleep(0)` against `asyncio.sleep(0)`", "sleep(0) round trip, 10,000 gathered",
     ".sleep", None, 1.2, 1.2, "ratio"),
]


def targets(paths: list[Path]) -> str:
    """Every target of the performance issue, per era and Python: the figure and ✓/✗."""
    reports, versions = load(paths)
    eras = sorted({name for r in reports for name in r["eras"]})
    lines = header("Each target against the run of each version above (✓ met, ✗ missed; "
                   "\"gain\" is how many times less time the era's `sleep` takes than the "
                   "baseline):", "target | era", versions, ":---:")
    for what, group, suffix, baseline, near, far, kind in TARGETS:
        for era in eras:
            cells = []
            for report in reports:
                rows = {r["name"]: r for r in report["results"] if r["group"] == group}
                mine = rows.get(era + suffix)
                if mine is None or (baseline is not None and baseline not in rows):
                    cells.append("—")
                    continue
                minor = int(report["python"].split(".")[1])
                limit = near if minor in (10, 11) else far
                if kind == "ratio":
                    value = mine["ratio"]
                    cells.append(f"{value:.2f}× {'✓' if value <= limit else '✗'} (≤ {limit})")
                else:
                    value = rows[baseline]["ns_per_op"] / mine["ns_per_op"]
                    cells.append(f"{value:.0f}× {'✓' if value >= limit else '✗'} (≥ {limit})")
            lines.append(f"| {what} | `{era}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = sys.argv[1:]
    BUILD.mkdir(parents=True, exist_ok=True)
    if args == ["--tables-only"]:  # regenerate the tables from the last runs' JSON
        paths = sorted(BUILD.glob("results-3.*.json"), key=lambda p: int(p.stem.split(".")[1]))
    else:
        paths = [p for p in (run(v) for v in args or DEFAULT) if p is not None]
    generated = ROOT / "docs" / "src" / "generated"
    for name, text in [("benchmarks-across.md", table(paths)), ("targets.md", targets(paths))]:
        (BUILD / name).write_text(text)
        (generated / name).write_text("<!-- generated by benchmarks/across.py -->\n" + text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
