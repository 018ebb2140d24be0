"""One suite, run against each era's module.

Every test that takes the ``era`` fixture runs once per era module. Which eras an
environment must provide is set by ``PYO3_ASYNC_ERAS`` (tox sets it per environment;
default: every era this Python supports). An expected module that fails to import is a
test failure, never a skip. The eras themselves are listed once, in ``tools/eras.py``.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

from eras import ERAS


def expected_eras() -> list[str]:
    chosen = os.environ.get("PYO3_ASYNC_ERAS", ",".join(ERAS)).split(",")
    unknown = set(chosen) - set(ERAS)
    if unknown:
        raise pytest.UsageError(f"unknown era(s) in PYO3_ASYNC_ERAS: {sorted(unknown)}")
    return chosen


def pytest_generate_tests(metafunc):
    if "era" in metafunc.fixturenames:
        metafunc.parametrize("era", expected_eras(), indirect=True, scope="session")


@pytest.fixture(scope="session")
def era(request):
    """The era module under test (skipped only where its PyO3 cannot run)."""
    module_name, oldest = ERAS[request.param].module, ERAS[request.param].oldest
    if sys.version_info < oldest:
        pytest.skip(
            f"{module_name} needs Python {oldest[0]}.{oldest[1]}+ "
            f"(its PyO3 dropped older versions); this is {sys.version.split()[0]}"
        )
    return importlib.import_module(module_name)
