"""The benchmark cases of ``bench.py``, timed by pytest-benchmark.

Not part of the test suite (``shared-tests/``): ``bench.py`` runs this file with
``--benchmark-enable`` and turns pytest-benchmark's JSON into the project's (ns per
operation, ratio to the native baseline of the same run). Run directly, it takes its
settings from the environment ``bench.py`` sets:

    PYO3_ASYNC_BENCH_SHORT=1   small counts (CI)
    PYO3_ASYNC_BENCH_ROUNDS=N  rounds per benchmark (default 9, short: 3), after one warm-up
    PYO3_ASYNC_BENCH_ONLY=...  only the groups whose title contains one of these lines

Each round runs a case once (its ``ops`` operations); ``bench.py`` keeps the median
round and the spread of all of them.
"""

from __future__ import annotations

import os

import pytest

import bench  # this directory: pytest puts it first on sys.path (it has no __init__.py)

SHORT = os.environ.get("PYO3_ASYNC_BENCH_SHORT") == "1"
ROUNDS = int(os.environ.get("PYO3_ASYNC_BENCH_ROUNDS") or (3 if SHORT else 9))
ONLY = [text for text in os.environ.get("PYO3_ASYNC_BENCH_ONLY", "").split("\n") if text]
CASES = [
    case
    for case in bench.benchmarks(bench.load_eras(), SHORT)
    if not ONLY or any(text in case.group for text in ONLY)
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group} / {c.name}" for c in CASES])
def test_benchmark(benchmark, case):
    benchmark.group = case.group
    benchmark.extra_info.update(
        group=case.group, name=case.name, baseline=case.baseline, ops=case.ops, era=case.era
    )
    benchmark.pedantic(case.run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
