"""Python awaitables written in Rust with today's PyO3 (#[pymethods]).

The compiled module does the work; this package re-exports it, and its ``baselines``
submodule (the same futures written with PyO3 ``async fn`` and pyo3-async-runtimes).
"""

from .pyo3_modern_pymethods import *  # noqa: F403
from .pyo3_modern_pymethods import __all__, __doc__  # noqa: F401
