"""Write the compatibility matrix from the JUnit reports of tox runs.

    python tools/matrix.py [--tox-result build/matrix/tox-result.json]

Every tox environment that runs pytest leaves ``build/matrix/<env>.xml``. This script
reads the reports there into ``docs/src/generated/matrix.json`` (tracked: the latest
result of every environment, with the time it ran), then writes the table, from that file,
to ``docs/src/generated/matrix.md`` and into the block of README.md between the
``matrix`` markers: for each Python and era what was run and how it went, what was only
compiled, and what is refused.

A run of some environments (``tools/dev test -e py311-pymethods``) thus updates their cells
only; every other cell keeps the latest result it had, and any cell from a day other than
the table's usual one shows its date. ``--tox-result`` is tox's ``--result-json`` of the
run (``tools/dev test`` passes both): an environment tox ran that left no new report (tox
failed before pytest ran, e.g. at the build) is recorded as a failure, not left at its
previous result.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from eras import ERAS

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "build" / "matrix"
GENERATED = ROOT / "docs" / "src" / "generated"
RESULTS = GENERATED / "matrix.json"
README = ROOT / "README.md"
PYTHONS = ["3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
# Debug builds of CPython (Py_DEBUG), a column each after the releases: their tox
# environments (py311d-pyproto, ...) run the suite and then tools/refleaks.py, whose
# report is the environment's name with "-refleaks".
DEBUG_PYTHONS = ["3.11d", "3.14d", "3.15d"]
# Other interpreters, each a column after the CPython ones: (title, tox environment
# prefix, the Python version it implements).
OTHER_INTERPRETERS = [("PyPy 3.11", "pypy311", "3.11")]
# Free-threaded builds (Py_GIL_DISABLED): the last column shows whether each era compiles
# for one (build-checks), then the modern suite's run on each of these that was found
# (py314t-pymethods, ...; tools/dev test adds them when tools/pythons.sh finds one).
FREE_THREADED_PYTHONS = ["3.14t", "3.15t"]
# The test cases whose outcome a cell shows (the rest are counted).
NOTABLE = re.compile(
    r"test_clean_under_valgrind|valgrind_attribution"
    r"|test_modern_compiles_for_free_threaded_314|test_pyo3_0_12_refuses_free_threaded"
    r"|test_pyo3_0_12_refuses_pypy"
)
LEGEND = (
    "✅ the whole shared suite passed in that tox environment (valgrind clean: the "
    "memory-safety tests ran there and found no invalid read or write); 🛡 the core of "
    "the suite (the tests marked `valgrind`) also ran under valgrind's memcheck (its "
    "`-valgrind` environment) with no invalid access and no definite leak attributable to "
    "the crates; 3.11d, 3.14d and 3.15d are debug builds of CPython (`Py_DEBUG`: the "
    "interpreter's own assertions on; the suite's core ran, the tests marked `valgrind`), "
    "where 🩸 says "
    "that `tools/refleaks.py` ran every public path of the era repeatedly and found no "
    "steady growth of `sys.gettotalrefcount()` or `sys.getallocatedblocks()`; "
    "❌ some of it failed; — that PyO3 does not support that Python; 3.14t is "
    "free-threaded CPython: 🔨 the crate was compiled for it (`PYO3_CONFIG_FILE`), "
    '"compiled only" where no free-threaded interpreter was found to run the suite on '
    '(`tools/pythons.sh` looks in pyenv, uv and the PATH; lines "3.14t:" and '
    '"3.15t:" give a run\'s result), ⛔ the crate refuses to build for it (there and '
    "on PyPy, a test checks the refusal)."
)

Result = Dict[str, Any]
# One line of a cell, and the result it comes from (None: no date to show).
Line = Tuple[str, Optional[Result]]
Cell = List[Line]


def version_key(version: str) -> tuple[int, ...]:
    """``3.11`` -> (3, 11); a build's letter (``3.11d``) does not count."""
    return tuple(int(part.rstrip("dt")) for part in version.split("."))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def when(result: Result) -> datetime:
    return datetime.fromisoformat(result["time"])


def read_report(path: Path) -> Result:
    """What a JUnit report says: counts, the notable cases, and when it ran."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    stamp = suite.get("timestamp") if suite is not None else None
    ran = datetime.fromisoformat(stamp) if stamp else None
    if ran is None:
        ran = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    elif ran.tzinfo is None:
        ran = ran.astimezone()  # pytest writes local time
    result: Result = {
        "time": ran.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "passed": 0,
        "failed": 0,
        "skipped": 0,
        "cases": {},
    }
    for case in root.iter("testcase"):
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        result[state] += 1
        if NOTABLE.match(name) and state != "skipped":
            # A parametrized case (one per era) has failed if any of its runs failed.
            key = name.split("[")[0]
            if result["cases"].get(key) != "failed":
                result["cases"][key] = state
    return result


def table_environments() -> set[str]:
    """The tox environments whose results the table shows."""
    names = {"build-checks"}
    prefixes = [f"py{python.replace('.', '')}" for python in PYTHONS + DEBUG_PYTHONS]
    prefixes += [prefix for _, prefix, _ in OTHER_INTERPRETERS]
    prefixes += [f"py{python.replace('.', '')}" for python in FREE_THREADED_PYTHONS]
    for era in ERAS.values():
        for prefix in prefixes:
            env = f"{prefix}-{era.name}"
            names |= {env, env + "-valgrind"}
    return names


def merge(stored: dict[str, Result], ran: list[str]) -> dict[str, Result]:
    """The stored results, updated with every report newer than what is stored, and with
    a failure for each environment of ``ran`` that left no report."""
    merged = dict(stored)
    fresh = set()
    for path in sorted(REPORTS.glob("*.xml")) if REPORTS.is_dir() else []:
        env, result = path.stem, read_report(path)
        if env not in merged or when(result) >= when(merged[env]):
            merged[env] = result
            fresh.add(env)
    for env in ran:
        # Only the environments of the table are expected to leave a report (lint and
        # bench, for instance, run no pytest with --junitxml).
        if env not in fresh and env in table_environments():
            merged[env] = {"time": now(), "error": "tox failed before the suite ran"}
    return dict(sorted(merged.items()))


def parts(era: str, prefix: str, results: dict[str, Result]) -> Cell:
    """The lines of one cell (tox environment ``{prefix}-{era}``), each with the result
    it comes from."""
    env = f"{prefix}-{era}"
    result = results.get(env)
    if result is None:
        return [("not run", None)]
    lines: Cell
    refusal = [
        state
        for case, state in result.get("cases", {}).items()
        if case.startswith("test_pyo3_0_12_refuses")
    ]
    if refusal and "error" not in result and not result["failed"]:
        return [("⛔ refused at build" if "passed" in refusal else "❌ refusal not shown", result)]
    if "error" in result:
        lines = [(f"❌ {result['error']}", result)]
    elif result["failed"]:
        total = result["failed"] + result["passed"]
        lines = [(f"❌ {result['failed']} of {total} failed", result)]
    else:
        lines = [(f"✅ {result['passed']} passed", result)]
    valgrind = result.get("cases", {}).get("test_clean_under_valgrind")
    if valgrind == "passed":
        lines.append(("valgrind clean", None))
    elif valgrind == "failed":
        lines.append(("valgrind errors", None))
    memcheck = results.get(env + "-valgrind")
    if memcheck is not None:
        clean = (
            "error" not in memcheck
            and not memcheck["failed"]
            and memcheck["cases"].get("valgrind_attribution") == "passed"
        )
        lines.append((f"{'🛡' if clean else '❌'} core suite under memcheck", memcheck))
    refleaks = results.get(env + "-refleaks")
    if refleaks is not None:
        clean = "error" not in refleaks and not refleaks["failed"] and refleaks["passed"] > 0
        lines.append((f"{'🩸 no refleak' if clean else '❌ refleaks'}", refleaks))
    return lines


def free_threaded(era: str, results: dict[str, Result]) -> Cell:
    result = results.get("build-checks")
    if result is None:
        return [("not run", None)]
    if "error" in result:
        return [(f"❌ {result['error']}", result)]
    cases = result["cases"]
    if era == "pymethods":
        compiled = cases.get("test_modern_compiles_for_free_threaded_314") == "passed"
        ran = [
            python
            for python in FREE_THREADED_PYTHONS
            if f"py{python.replace('.', '')}-{era}" in results
        ]
        if not compiled:
            return [("❌ does not compile", result)]
        lines: Cell = [("🔨 compiled" + ("" if ran else " only"), result)]
        for python in ran:
            for text, run in parts(era, f"py{python.replace('.', '')}", results):
                lines.append((f"{python}: {text}", run))
        return lines
    refused = cases.get("test_pyo3_0_12_refuses_free_threaded") == "passed"
    return [("⛔ refused at build" if refused else "❌ refusal not shown", result)]


def table(results: dict[str, Result]) -> str:
    cells: dict[str, list[Cell]] = {}
    for era in ERAS.values():
        row: list[Cell] = []
        for python in PYTHONS + DEBUG_PYTHONS:
            if version_key(python) < era.oldest:
                row.append([(f"— (needs {era.oldest[0]}.{era.oldest[1]}+)", None)])
            else:
                row.append(parts(era.name, f"py{python.replace('.', '')}", results))
        for _, prefix, python in OTHER_INTERPRETERS:
            if version_key(python) < era.oldest:
                row.append([(f"— (needs {era.oldest[0]}.{era.oldest[1]}+)", None)])
            else:
                row.append(parts(era.name, prefix, results))
        row.append(free_threaded(era.name, results))
        cells[era.name] = row
    days = collections.Counter(
        when(result).date().isoformat()
        for row in cells.values()
        for cell in row
        for _, result in cell
        if result is not None
    )
    usual = days.most_common(1)[0][0] if days else None

    def render(cell: Cell) -> str:
        lines = []
        for text, result in cell:
            day = when(result).date().isoformat() if result is not None else None
            lines.append(text if day in (None, usual) else f"{text} ({day})")
        return "<br>".join(lines)

    columns = PYTHONS + DEBUG_PYTHONS + [title for title, _, _ in OTHER_INTERPRETERS] + ["3.14t"]
    lines = [
        "| era | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for era in ERAS.values():
        lines.append(f"| {era.title} | " + " | ".join(render(c) for c in cells[era.name]) + " |")
    when_run = (
        f"Each cell is the latest run of its tox environments: on {usual} unless it shows "
        "another date."
        if usual
        else "No environment has run yet."
    )
    return "\n".join(lines) + "\n\n" + when_run + " " + LEGEND + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="See the module docstring (tools/matrix.py) for what is kept between runs.",
    )
    parser.add_argument(
        "--tox-result",
        type=Path,
        metavar="JSON",
        help="tox's --result-json of the run: each environment it ran must have left a report",
    )
    args = parser.parse_args(argv)
    ran = []
    if args.tox_result is not None and args.tox_result.exists():
        environments = json.loads(args.tox_result.read_text(encoding="utf-8"))["testenvs"]
        ran = [env for env, info in environments.items() if info]
    stored = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    results = merge(stored, ran)
    GENERATED.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = table(results)
    (GENERATED / "matrix.md").write_text(
        "<!-- generated by tools/matrix.py from docs/src/generated/matrix.json -->\n" + text,
        encoding="utf-8",
    )
    block = re.compile(r"(<!-- matrix:begin -->\n).*?(<!-- matrix:end -->)", re.S)
    readme = README.read_text(encoding="utf-8")
    README.write_text(block.sub(lambda m: m.group(1) + text + m.group(2), readme), "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
