"""Memory safety under valgrind: no invalid read or write, in either era.

PyO3 0.12 predates CPython 3.10's ``am_send`` slot and 3.12+'s longer type object; the
0.12 crate's ``compat`` module repairs both. These tests run a workload under valgrind
with the repairs (clean) and, for the 0.12 era, without them
(``PYO3_0_12_PYPROTO_UNFIXED=1``), where valgrind must catch the out-of-bounds accesses
(or the process crashes), proving the repairs are what makes the difference.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUPPRESSIONS = ROOT / "tools" / "valgrind-glibc.supp"

pytestmark = [
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
    pytest.mark.skipif(
        sys.implementation.name != "cpython",
        reason="memcheck runs CPython with PYTHONMALLOC=malloc; PyPy's own GC and JIT are not "
        "run under it",
    ),
]

INVALID = re.compile(r"Invalid (read|write) of size \d+")


def run_under_valgrind(module: str, **env: str) -> subprocess.CompletedProcess:
    command = ["valgrind", "--error-exitcode=0", "--num-callers=30"]
    if SUPPRESSIONS.exists():
        command.append(f"--suppressions={SUPPRESSIONS}")
    command += [sys.executable, str(HERE / "valgrind_workload.py"), module]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONMALLOC": "malloc", **env},
    )


def invalid_accesses(proc: subprocess.CompletedProcess) -> list[str]:
    return INVALID.findall(proc.stderr)


def test_clean_under_valgrind(era):
    proc = run_under_valgrind(era.__name__)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "workload ok" in proc.stdout
    assert not invalid_accesses(proc), proc.stderr[-20000:]


@pytest.mark.skipif(
    sys.version_info < (3, 10),
    reason="the layouts PyO3 0.12 knows match CPython before 3.10: nothing to catch",
)
def test_unfixed_pyproto_is_caught(era):
    if era.ERA != "pyproto":
        pytest.skip("only the PyO3 0.12 era has layout repairs to switch off")
    proc = run_under_valgrind(era.__name__, PYO3_0_12_PYPROTO_UNFIXED="1")
    crashed = proc.returncode != 0 or "workload ok" not in proc.stdout
    assert invalid_accesses(proc) or crashed, proc.stderr[-5000:]
