"""The two eras of PyO3 this project builds, defined once for everything in Python.

The shared suite (``shared-tests/conftest.py``), the tools (``compare.py``, ``matrix.py``,
``valgrind_suite.py``) and the benchmarks import this module: pytest finds it through the
``pythonpath`` setting of the root ``pyproject.toml``, the scripts of ``tools/`` from
their own directory, and ``benchmarks/bench.py`` by path. ``tox.ini`` names the same eras
as environment factors (``pyproto``, ``pymethods``), and each module reports its own as
its ``ERA`` attribute.

Runs on every Python the suite runs on (3.7 and later).
"""

from __future__ import annotations

from typing import NamedTuple


class Era(NamedTuple):
    """One era: a crate and the Python module it builds."""

    name: str
    """The era's short name: the tox factor, and the module's ``ERA`` attribute."""
    module: str
    """The import name of the module the crate builds."""
    crate: str
    """The crate's directory in the repository (what ``pip install`` takes)."""
    oldest: tuple[int, int]
    """The oldest Python its PyO3 supports."""
    title: str
    """How the compatibility matrix names it."""


ERAS: dict[str, Era] = {
    era.name: era
    for era in [
        Era("pyproto", "pyo3_0_12_pyproto", "pyo3-0.12-pyproto", (3, 7), "PyO3 0.12 `#[pyproto]`"),
        Era(
            "pymethods",
            "pyo3_modern_pymethods",
            "pyo3-modern-pymethods",
            (3, 9),
            "PyO3 0.30 `#[pymethods]`",
        ),
    ]
}
"""Era name -> ``Era``, oldest era first."""

MODULES: list[str] = [era.module for era in ERAS.values()]
"""The import names of every era's module, oldest era first."""
