"""The type stubs match the module (stubtest) and type-check a sample program (mypy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

mypy = pytest.importorskip("mypy", reason="mypy is not installed in this environment")


def run_mypy_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=600
    )


def test_stubtest(era):
    proc = run_mypy_module(
        "mypy.stubtest",
        era.__name__,
        "--allowlist",
        str(HERE / "stubtest-allowlist.txt"),
        "--ignore-unused-allowlist",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sample_program_type_checks(era, tmp_path):
    sample = (HERE / "stub_sample.py").read_text().replace("ERA_MODULE", era.__name__)
    program = tmp_path / "sample.py"
    program.write_text(sample)
    proc = run_mypy_module(
        "mypy",
        "--strict",
        "--no-incremental",
        "--cache-dir",
        str(tmp_path / "cache"),
        str(program),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stub_rejects_misuse(era, tmp_path):
    """The stubs are not vacuous: a wrong call fails type checking."""
    program = tmp_path / "misuse.py"
    program.write_text(f"import {era.__name__} as m\nm.countdown('three', None)\n")
    proc = run_mypy_module(
        "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "c"), str(program)
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "countdown" in proc.stdout
