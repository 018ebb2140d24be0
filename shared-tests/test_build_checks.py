"""Compile-time checks: free-threaded CPython (PEP 703), the 0.12 era's refusal of PyPy, and
the loom model of the bridge's wake-up protocol.

No free-threaded interpreter can be installed here, so these tests compile for one: a
``PYO3_CONFIG_FILE`` describing CPython 3.14t (``build_flags=Py_GIL_DISABLED``). The
modern crate must compile for it (its module declares ``gil_used = false``); the 0.12
crate must refuse, saying why. What a free-threaded run would test of the lock-free
wake-up path, loom checks instead: ``tools/wake_model.sh`` runs both crates'
``src/wake.rs`` under every interleaving of two waking threads and the loop (up to a
bound of preemptions). They run cargo, so only the ``build-checks`` tox environment
enables them (``PYO3_ASYNC_BUILD_CHECKS=1``). Clippy runs in ``tools/dev lint`` (the
``lint`` tox environment).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tools" / "free-threaded" / "pyo3-config-3.14t.txt"

pytestmark = [
    pytest.mark.build,
    pytest.mark.skipif(
        os.environ.get("PYO3_ASYNC_BUILD_CHECKS") != "1",
        reason="build checks run in the build-checks tox environment",
    ),
]


def cargo_build(package: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYO3_CONFIG_FILE": str(CONFIG),
        "PYO3_BUILD_EXTENSION_MODULE": "1",
        "CARGO_TARGET_DIR": str(ROOT / "target" / "free-threaded"),
    }
    return subprocess.run(
        ["cargo", "build", "--release", "--package", package],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_modern_compiles_for_free_threaded_314():
    proc = cargo_build("pyo3-modern-pymethods")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "Py_GIL_DISABLED" in CONFIG.read_text()


def test_modern_declares_free_threading_support():
    lib = (ROOT / "pyo3-modern-pymethods" / "src" / "lib.rs").read_text()
    assert "#[pymodule(gil_used = false)]" in lib


def test_pyo3_0_12_refuses_free_threaded():
    proc = cargo_build("pyo3-0-12-pyproto")
    assert proc.returncode != 0
    assert "free-threaded" in proc.stderr
    assert "PEP 703" in proc.stderr


@pytest.mark.skipif(
    sys.implementation.name != "pypy", reason="needs PyPy (the pypy311-pyproto environment)"
)
def test_pyo3_0_12_refuses_pypy():
    """PyO3 0.12 does not run on PyPy 3.11 (see pyo3-0.12-pyproto/build.rs): the 0.12 crate
    refuses to build for it, saying why, instead of failing at import or leaking."""
    env = {
        **os.environ,
        "PYO3_PYTHON": sys.executable,
        "CARGO_TARGET_DIR": str(ROOT / "target" / "tox"),
    }
    env.pop("PYO3_CONFIG_FILE", None)
    proc = subprocess.run(
        ["cargo", "build", "--release", "--package", "pyo3-0-12-pyproto"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode != 0
    assert "cannot be built for PyPy" in proc.stderr, proc.stderr[-5000:]
    assert "pyo3-modern-pymethods" in proc.stderr


def test_wake_protocol_passes_the_loom_model():
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "wake_model.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    # The models ran, for the wake.rs of each crate (an empty run would pass too).
    for era in ("pyproto", "pymethods"):
        assert re.search(rf"^test {era}::\w+ \.\.\. ok$", proc.stdout, re.M), output[-8000:]
    assert not re.search(r"^test .* FAILED$", proc.stdout, re.M)
    # Both crates' files are the one protocol: the model checks both, the bridge uses both.
    pyproto, pymethods = (
        (ROOT / crate / "src" / "wake.rs").read_bytes()
        for crate in ("pyo3-0.12-pyproto", "pyo3-modern-pymethods")
    )
    assert pyproto == pymethods
