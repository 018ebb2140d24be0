"""Run the benchmark suite on several Pythons and tabulate the ratios side by side.

    python benchmarks/across.py [3.9 3.10 ...]   (default: 3.9 to 3.15)
    python benchmarks/across.py --tables-only    (the tables again, from the last runs)

For each version, a venv under build/bench/ gets both eras built for that interpreter
(each version with its own Cargo target directory, ``target/bench/pyX.Y``), and
``bench.py`` writes ``build/bench/results-X.Y.json`` (every timed row and the memory
probe; the load probe only runs in ``tools/dev compare``). The interpreters are found as
``pythonX.Y`` on PATH (``tools/dev test`` puts them there; so does ``tools/pythons.sh``).
Then the ratios of every run, each with its range, go into one markdown table, and each
target is checked against them in another (✓/✗ only when the whole range is on one
side): ``build/bench/`` and ``docs/src/generated/`` get ``benchmarks-across.md`` and ``targets.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bench  # this script's directory, first on sys.path
from bench import eras

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
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "pytest", "pytest-benchmark"], check=True
    )
    print(f"building both eras for Python {version}", file=sys.stderr)
    # One Cargo target directory per version: PyO3 recompiles for each interpreter, so
    # sharing one would rebuild everything at every switch.
    env = {**os.environ, "CARGO_TARGET_DIR": str(ROOT / "target" / "bench" / f"py{version}")}
    subprocess.run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--force-reinstall",
            "--no-deps",
            *(str(ROOT / era.crate) for era in eras.ERAS.values()),
        ],
        check=True,
        env=env,
    )
    return py


# What bench.py runs on each version: every timed row, the memory probe in one process
# per figure, no load probe (`tools/dev compare` runs the full set on one version).
BENCH_ARGS = ["--no-load", "--memory-processes", "1"]


def run(version: str) -> Path | None:
    py = venv_for(version)
    if py is None:
        return None
    out = BUILD / f"results-{version}.json"
    subprocess.run(
        [py, str(ROOT / "benchmarks" / "bench.py"), *BENCH_ARGS, "--json", str(out)], check=True
    )
    return out


def load(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """The reports of ``bench.py``, and the Python version of each."""
    reports = [json.loads(p.read_text()) for p in paths]
    return reports, [r["python"] for r in reports]


def header(text: str, first: str, versions: list[str], align: str) -> list[str]:
    """The lines of a table's introduction and header, one column per version."""
    return [
        text,
        "",
        f"| {first} | " + " | ".join(versions) + " |",
        "|---|---|" + f"{align}|" * len(versions),
    ]


def conditions(reports: list[dict]) -> str:
    """Where and how the runs were made: machine, rounds, load average per version."""
    loads = ", ".join(
        f"{r['python']}: {r.get('loadavg', '?').split()[0]}→{r.get('loadavg_end', '?').split()[0]}"
        for r in reports
    )
    first = reports[0] if reports else {}
    return (
        f"One run per version on {first.get('machine', '?')} ({first.get('cpus', '?')} CPUs), "
        f"median of {first.get('rounds', '?')} rounds after one warm-up; 1-minute load "
        f"average at the start→end of each run: {loads}."
    )


def table(paths: list[Path]) -> str:
    reports, versions = load(paths)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for report in reports:
        for row in report["results"]:
            if row["name"] == row["baseline"]:
                continue
            cell = f"{row['ratio']:.2f}× ({row['ratio_lo']:.2f}–{row['ratio_hi']:.2f})"
            if row["noisy"]:
                cell += " \\*"
            rows.setdefault((row["group"], row["name"]), {})[report["python"]] = cell
    lines = header(
        conditions(reports)
        + " Each cell: the ratio of medians to the group's baseline in the same run, and "
        "its range (the row's interquartile range against the baseline's); < 1 is faster. "
        "\\* marks a noisy row (an IQR over 10% of the median). A range that contains "
        "1.00 does not rank the row against its baseline.",
        "benchmark | implementation",
        versions,
        "---:",
    )
    for (group, name), cells in rows.items():
        lines.append(
            f"| {group.replace('*', chr(92) + '*')} | `{name}` | "
            + " | ".join(cells.get(v, "—") for v in versions)
            + " |"
        )
    memory: dict[tuple[str, str], dict[str, str]] = {}
    for report in reports:
        for row in report.get("memory", []):
            cell = f"{row['tracemalloc']['median']:,.0f} / {row['rss']['median']:,.0f}"
            memory.setdefault((row["kind"], row["name"]), {})[report["python"]] = cell
    if memory:
        lines += [""] + header(
            "Memory per object, bytes, tracemalloc / RSS (one process each; pending: "
            "100,000 Tasks each suspended on one awaitable; size: 100,000 coroutine objects "
            "not started):",
            "kind | object",
            versions,
            "---:",
        )
        for (kind, name), cells in memory.items():
            lines.append(
                f"| {kind} | `{name}` | " + " | ".join(cells.get(v, "—") for v in versions) + " |"
            )
    return "\n".join(lines) + "\n"


MODERN = eras.ERAS["pymethods"].module
READY_SEQ = "a future ready at its first poll, awaited by a Task, sequential"
READY_GATHER = "a future ready at its first poll, awaited by a Task, 10,000 gathered"
# The targets: (what, benchmark group, implementation suffix, baseline (None: the group's
# own), limit where `await` reaches the `am_send` slot with no exception (3.10, 3.11,
# 3.15), limit elsewhere, kind): "ratio" (at most the limit), "gain"
# (the baseline at least `limit` times the implementation), "memory" (bytes per pending
# await, by RSS, at most `limit` times the baseline's), and the floor: a row of Python
# or CPython code only (None: none) that shows the best any implementation of the same
# protocol reaches there, checked against the same limit.
TARGETS = [
    (
        "await of a ready value",
        "await of a ready value",
        ".ready",
        None,
        1.00,
        1.5,
        "ratio",
        bench.DONE_FUTURE,
    ),
    (
        "one suspension through `delegate`, stepped from C",
        "one suspension, delegated, stepped from C",
        ".delegate",
        None,
        1.3,
        1.3,
        "ratio",
        None,
    ),
    (
        "one suspension through `delegate`, stepped by `send()`",
        "one suspension, delegated",
        ".delegate",
        None,
        1.3,
        1.3,
        "ratio",
        None,
    ),
    (
        "`create_task` of a `RustCoroutine`",
        "create_task and run it",
        ".ready",
        None,
        1.00,
        1.00,
        "ratio",
        None,
    ),
    (
        "a future ready at its first poll, in sequence: times less than `future_into_py` "
        "of the same ready future",
        READY_SEQ,
        ".sleep(0) (bridge)",
        f"{MODERN}.baselines._bench.ready_future_into_py (future_into_py)",
        10,
        10,
        "gain",
        None,
    ),
    (
        "a future ready at its first poll, in sequence: times less than PyO3 `async fn` "
        "returning at once",
        READY_SEQ,
        ".sleep(0) (bridge)",
        f"{MODERN}.baselines.ready_async_fn (PyO3 async fn)",
        2,
        2,
        "gain",
        None,
    ),
    (
        "10,000 gathered `sleep(0)` (ready at first poll) against native `async def` "
        "returning at once",
        READY_GATHER,
        ".sleep(0) (bridge)",
        None,
        1.2,
        1.2,
        "ratio",
        None,
    ),
    (
        "`async for`, one item of `ticks(n, 0)`, against a native async generator",
        "async for, one item: ticks(n, 0)",
        ".ticks(n, 0)",
        None,
        1.2,
        1.2,
        "ratio",
        None,
    ),
    (
        "`primes(10**7)` through `async for`: times the Python pipeline's throughput",
        "async for over the primes below 10**7 (short: 10**5), per prime",
        ".primes",
        "Python sieve in the thread pool, through an asyncio.Queue",
        5,
        5,
        "gain",
        bench.PRIMES_FLOOR,
    ),
    (
        "`async with Semaphore`, uncontended, against `asyncio.Semaphore`",
        "async with a semaphore, uncontended (one Task)",
        ".Semaphore",
        None,
        1.5,
        1.5,
        "ratio",
        None,
    ),
    (
        "bytes per pending await (RSS): `sleep(3600)` in a Task against `asyncio.sleep(3600)` "
        "in a Task",
        "pending",
        ".sleep(3600) (RustFuture)",
        "asyncio.sleep(3600)",
        1.0,
        1.0,
        "memory",
        None,
    ),
]


def verdict(lo: float, hi: float, limit: float, at_most: bool) -> str:
    """✓ or ✗ only when the whole range is on one side of the limit; ~ otherwise."""
    if at_most:
        return "✓" if hi <= limit else "✗" if lo > limit else "~"
    return "✓" if lo >= limit else "✗" if hi < limit else "~"


def target_cell(report: dict, group: str, mine_name: str, baseline, limit, kind) -> str:
    if kind == "memory":
        rows = {r["name"]: r for r in report.get("memory", []) if r["kind"] == group}
        mine, base = rows.get(mine_name), rows.get(baseline)
        if mine is None or base is None:
            return "—"
        value = mine["rss"]["median"] / base["rss"]["median"]
        lo, hi = mine["rss"]["min"] / base["rss"]["max"], mine["rss"]["max"] / base["rss"]["min"]
        mark = verdict(lo, hi, limit, at_most=True)
        return f"{value:.2f}× {mark} (≤ {limit}; {mine['rss']['median']:,.0f} B)"
    rows = {r["name"]: r for r in report["results"] if r["group"] == group}
    mine = rows.get(mine_name)
    if mine is None or (baseline is not None and baseline not in rows):
        return "—"
    noisy = " \\*" if mine["noisy"] else ""
    if kind == "ratio":
        mark = verdict(mine["ratio_lo"], mine["ratio_hi"], limit, at_most=True)
        return (
            f"{mine['ratio']:.2f}× ({mine['ratio_lo']:.2f}–{mine['ratio_hi']:.2f}) {mark} "
            f"(≤ {limit}){noisy}"
        )
    base = rows[baseline]
    value = base["ns_per_op"] / mine["ns_per_op"]
    lo, hi = base["q1"] / mine["q3"], base["q3"] / mine["q1"]
    mark = verdict(lo, hi, limit, at_most=False)
    return f"{value:.1f}× ({lo:.1f}–{hi:.1f}) {mark} (≥ {limit}){noisy}"


def targets(paths: list[Path]) -> str:
    """Every target, per era and Python: the figure, its range, and ✓/✗/~."""
    reports, versions = load(paths)
    eras = sorted({name for r in reports for name in r["eras"]})
    lines = header(
        conditions(reports)
        + " Each target against the run of each version (✓ met and ✗ missed over the "
        "whole range of the figure, ~ when the range straddles the limit; the range of a "
        "ratio or a gain pairs the interquartile ranges of the two rows, that of a memory "
        'figure the min–max of its processes; "gain": how many times less time the era '
        "takes per operation than the baseline; \\* a noisy row; a row named 'floor: …' "
        "runs no crate: it is the best any implementation of the same protocol reaches "
        "on that Python, so a limit its whole range misses cannot be met there):",
        "target | era",
        versions,
        ":---:",
    )
    for what, group, suffix, baseline, near, far, kind, floor in TARGETS:
        rows = [(f"`{era}`", era + suffix) for era in eras]
        if floor is not None:
            rows.append((floor, floor))
        for label, name in rows:
            cells = []
            for report in reports:
                minor = int(report["python"].split(".")[1])
                limit = near if minor in (10, 11, 15) else far
                cells.append(target_cell(report, group, name, baseline, limit, kind))
            lines.append(f"| {what} | {label} | " + " | ".join(cells) + " |")
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
