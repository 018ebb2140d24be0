"""Run pytest under valgrind and fail on memory errors attributable to the crates.

    python tools/valgrind_suite.py [pytest arguments]

The interpreter runs with ``PYTHONMALLOC=malloc`` (so valgrind sees every allocation)
under memcheck, with the one glibc suppression of ``tools/valgrind-glibc.supp``. The run
fails when pytest fails, or when valgrind reports, attributable to the crates (PyO3 or
crate code in the access's stack, or in the stack that allocated or freed the block):
- an invalid read or write;
- a definite leak, other than the few blocks allocated once at module initialisation
  to live as long as the module, which do not grow: PyO3 0.12's method definitions
  (`PyInit_` in the stack), and with PyO3 0.30's multi-phase initialisation
  (`PyModule_ExecDef` in the stack) the names it adds to the module. CPython 3.13
  interns attribute names as immortal strings and never frees them at exit, so a name
  that no test file mentioned before the import (which would have interned it first)
  is reported as lost: a run of `test_drive.py` alone shows `delegate` that way.
CPython's own reports (its "uninitialised value" noise on non-valgrind builds, glibc's
AVX2 string functions reading past a string's end) are printed as a count, not counted.
A child forked by a test is left silent (`--child-silent-after-fork`): its report at
exit would count the threads it did not inherit as leaks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from eras import MODULES

ROOT = Path(__file__).resolve().parent.parent
SUPPRESSIONS = ROOT / "tools" / "valgrind-glibc.supp"
INVALID = re.compile(r"^==\d+== (Invalid (?:read|write) of size \d+)$", re.M)
RECORD = re.compile(r"^==\d+== \S.*\n(?:==\d+==  .*\n)+", re.M)
# PyO3 itself, or either crate (the crates' names contain "pyo3" too: listed for clarity).
OURS = re.compile("|".join(["pyo3", *MODULES]))
# Allocated once while the module is initialised (see above).
ONCE_AT_IMPORT = re.compile(r"PyInit_|PyModule_ExecDef")


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "valgrind.log"
        command = [
            "valgrind",
            "--tool=memcheck",
            f"--suppressions={SUPPRESSIONS}",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--num-callers=40",
            # A test that forks (test_futures' forked child) would otherwise add the
            # child's exit report to the same log: its memory as the fork left it, the
            # threads it did not inherit, and so their allocations, "definitely lost".
            "--child-silent-after-fork=yes",
            f"--log-file={log}",
            sys.executable,
            "-m",
            "pytest",
            *sys.argv[1:],
        ]
        env = {**os.environ, "PYTHONMALLOC": "malloc"}
        status = subprocess.call(command, env=env)
        text = log.read_text(errors="replace")
    records = RECORD.findall(text)
    invalid = [r for r in records if INVALID.search(r)]
    ours = [r for r in invalid if OURS.search(r)]
    leaks = [
        r
        for r in records
        if "definitely lost" in r.splitlines()[0]
        and OURS.search(r)
        and not ONCE_AT_IMPORT.search(r)
    ]
    for record in ours + leaks:
        print(record, file=sys.stderr)
    summary = re.findall(r"ERROR SUMMARY: .*", text)
    print(
        f"valgrind: {len(ours)} invalid read/write(s) and {len(leaks)} definite leak(s) "
        f"attributable to PyO3 or the crates; {len(invalid) - len(ours)} invalid read(s) "
        f"inside CPython/glibc alone; {summary[-1] if summary else 'no summary'}"
    )
    record_verdict(ours + leaks)
    if status != 0:
        return status
    return 1 if ours or leaks else 0


def record_verdict(reports: list[str]) -> None:
    """Adds valgrind's verdict to pytest's JUnit report (``--junitxml``), if one is
    written, as a test case of its own: ``valgrind_attribution``, failed with the reports
    attributable to the crates, if any (``tools/matrix.py`` reads it)."""
    junit = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--junitxml=")), None)
    if junit is None or not Path(junit).exists():
        return
    import xml.etree.ElementTree as ET

    tree = ET.parse(junit)
    suite = tree.getroot().find("testsuite")
    if suite is None:
        suite = tree.getroot()
    case = ET.SubElement(suite, "testcase", classname="valgrind_suite", name="valgrind_attribution")
    if reports:
        failure = ET.SubElement(case, "failure", message=f"{len(reports)} report(s) of valgrind")
        failure.text = "\n".join(reports)
    tree.write(junit, encoding="utf-8", xml_declaration=True)


if __name__ == "__main__":
    sys.exit(main())
