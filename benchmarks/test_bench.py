"""The benchmark cases of ``bench.py``, timed by pytest-benchmark.

Not part of the test suite (``shared-tests/``): ``bench.py`` runs this file with
``--benchmark-enable`` and turns pytest-benchmark's JSON into the project's (ns per
operation, ratio to the native baseline of the same run). Run directly, it takes its
settings from the environment ``bench.py`` sets:

    PYO3_ASYNC_BENCH_SHORT=1   small counts (CI)
    PYO3_ASYNC_BENCH_ROUNDS=N  rounds per benchmark (default 5, short: 2)
    PYO3_ASYNC_BENCH_ONLY=...  only the groups whose title contains one of these lines

Each round runs a case once (its ``ops`` operations); the best round is what counts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

SHORT = os.environ.get("PYO3_ASYNC_BENCH_SHORT") == "1"
ROUNDS = int(os.environ.get("PYO3_ASYNC_BENCH_ROUNDS") or (2 if SHORT else 5))
ONLY = [text for text in os.environ.get("PYO3_ASYNC_BENCH_ONLY", "").split("\n") if text]
CASES = [
    case for case in bench.benchmarks(bench.load_eras(), SHORT)
    if not ONLY or any(text in case[0] for text in ONLY)
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} / {c[1]}" for c in CASES])
def test_benchmark(benchmark, case):
    group, name, baseline, ops, run = case
    benchmark.group = group
    benchmark.extra_info.update(group=group, name=name, baseline=baseline or name, ops=ops)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
