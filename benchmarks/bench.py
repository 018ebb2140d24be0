"""The benchmark suite: what awaiting costs in each era, against native Python.

Everything is measured in one pytest-benchmark session (``test_bench.py``, which holds
the cases defined here) on one interpreter, each figure as nanoseconds per operation and
as a ratio to its native baseline measured in the same run (best of several rounds,
garbage collector off while timing). Results go to JSON; ``report.py`` turns them into
the markdown table and chart of the guide.

    python benchmarks/bench.py [--short] [--json build/bench/results.json]

``--short`` runs every benchmark with small counts, for CI (it proves the suite works; its
figures are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ERAS = ["pyo3_0_12_pyproto", "pyo3_modern_pymethods"]


def load_eras():
    modules = {}
    for name in ERAS:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            pass
    return modules


def send_until_done(coro):
    """Steps a coroutine with no event loop (it must only yield None)."""
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.value


# --- 1. await of a ready value -----------------------------------------------------

async def native_ready(value):
    return value


def await_ready(factory, n):
    async def loop():
        for _ in range(n):
            await factory(1)

    return lambda: send_until_done(loop())


# --- 2. one suspension through delegate vs through await --------------------------

@types.coroutine
def yields(n):
    for _ in range(n):
        yield
    return n


async def native_delegate(awaitable):
    return await awaitable


def suspend_through(wrapper, n):
    """Each step a Python-level ``send(None)`` call, as Python code would step it."""
    return lambda: send_until_done(wrapper(yields(n)))


def suspend_through_from_c(wrapper, n):
    """Each step a C-level call of the iterator's slot (``tp_iternext``), as asyncio's C
    Task steps a coroutine (``PyIter_Send``) with no Python call in between."""
    def run():
        for _ in wrapper(yields(n)).__await__():
            pass

    return run


# --- 3. create_task -----------------------------------------------------------------

def create_tasks(factory, n):
    async def main():
        tasks = [asyncio.ensure_future(factory(1)) for _ in range(n)]
        for task in tasks:
            await task

    def run():
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    return run


# --- 4. Rust futures round trip -----------------------------------------------------

def sequential(factory, n):
    async def main():
        for _ in range(n):
            await factory(0)

    return lambda: asyncio.run(main())


def gathered(factory, n):
    async def main():
        await asyncio.gather(*(factory(0) for _ in range(n)))

    return lambda: asyncio.run(main())


# --- 5. drive() vs the same loop in Python ------------------------------------------

def python_drive(awaitable):
    iterator = awaitable.__await__()
    while True:
        try:
            item = next(iterator)
        except StopIteration as stop:
            return stop.value
        if item is not None:
            raise RuntimeError("needs an event loop")


def benchmarks(eras, short: bool):
    """(group, name, baseline name, ops, run) for every figure."""
    scale = 20 if short else 1
    n_await, n_steps, n_tasks = 200_000 // scale, 200_000 // scale, 20_000 // scale
    n_seq, n_gather = 20_000 // scale, 10_000 // scale
    cases = []

    group = "await of a ready value"
    cases.append((group, "native async def", None, n_await, await_ready(native_ready, n_await)))
    for name, m in eras.items():
        cases.append((group, f"{name}.ready", "native async def", n_await, await_ready(m.ready, n_await)))
        if hasattr(m, "baselines"):
            cases.append((group, f"{name}.baselines.ready_async_fn", "native async def",
                          n_await, await_ready(m.baselines.ready_async_fn, n_await)))

    for group, stepped in [("one suspension, delegated", suspend_through),
                           ("one suspension, delegated, stepped from C", suspend_through_from_c)]:
        cases.append((group, "native await", None, n_steps, stepped(native_delegate, n_steps)))
        for name, m in eras.items():
            if hasattr(m, "delegate"):
                cases.append((group, f"{name}.delegate", "native await", n_steps,
                              stepped(m.delegate, n_steps)))

    group = "create_task and run it"
    cases.append((group, "native coroutine", None, n_tasks, create_tasks(native_ready, n_tasks)))
    for name, m in eras.items():
        cases.append((group, f"{name}.ready", "native coroutine", n_tasks,
                      create_tasks(m.ready, n_tasks)))

    for shape, make, count in [("sequential", sequential, n_seq), ("10,000 gathered", gathered, n_gather)]:
        group = f"sleep(0) round trip, {shape}"
        cases.append((group, "asyncio.sleep", None, count, make(asyncio.sleep, count)))
        for name, m in eras.items():
            if hasattr(m, "sleep"):
                cases.append((group, f"{name}.sleep", "asyncio.sleep", count, make(m.sleep, count)))
            if hasattr(m, "baselines"):
                for baseline in ["sleep_async_fn", "sleep_future_into_py"]:
                    cases.append((group, f"{name}.baselines.{baseline}", "asyncio.sleep", count,
                                  make(getattr(m.baselines, baseline), count)))

    group = "a thread hop: await count_primes(2)"
    for name, m in eras.items():
        if hasattr(m, "count_primes"):
            cases.append((group, f"{name}.count_primes", None, n_seq // 4,
                          sequential(lambda _: m.count_primes(2), n_seq // 4)))

    group = "drive() of a countdown, per step"
    for name, m in eras.items():
        cases.append((group, f"python loop over {name}.countdown", None, n_steps,
                      lambda m=m: python_drive(m.countdown(n_steps, None))))
        cases.append((group, f"{name}.drive", f"python loop over {name}.countdown", n_steps,
                      lambda m=m: m.drive(m.countdown(n_steps, None))))
    return cases


def run_pytest_benchmark(args, raw: Path) -> int:
    """Times every case with pytest-benchmark (``test_bench.py``), writing its JSON to
    ``raw``; its own output is shown only if it fails."""
    env = {**os.environ, "PYO3_ASYNC_BENCH_SHORT": "1" if args.short else "",
           "PYO3_ASYNC_BENCH_ROUNDS": str(args.rounds or ""),
           "PYO3_ASYNC_BENCH_ONLY": "\n".join(args.only)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).with_name("test_bench.py")),
         "-q", "-p", "no:cacheprovider", "--benchmark-enable", "--benchmark-disable-gc",
         "--benchmark-timer=time.perf_counter", f"--benchmark-json={raw}"],
        env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        print(proc.stdout[-20000:], proc.stderr[-5000:], file=sys.stderr)
    return proc.returncode


def results_of(raw: dict) -> list[dict]:
    """Our rows from pytest-benchmark's JSON: the best round per operation, and its ratio
    to the baseline of its group (measured in the same run)."""
    results, baselines = [], {}
    for entry in raw["benchmarks"]:
        info = entry["extra_info"]
        ns = entry["stats"]["min"] * 1e9 / info["ops"]
        if info["baseline"] == info["name"]:
            baselines[(info["group"], info["name"])] = ns
        ratio = ns / baselines[(info["group"], info["baseline"])]
        results.append({"group": info["group"], "name": info["name"],
                         "baseline": info["baseline"], "ns_per_op": round(ns, 1),
                         "ratio": round(ratio, 3), "ops": info["ops"]})
        print(f"{info['group']:40.40} {info['name']:55.55} {ns:12.1f} ns  {ratio:6.2f}x",
              file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="small counts (CI)")
    parser.add_argument("--json", type=Path, default=Path("build/bench/results.json"))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only the groups whose title contains TEXT (repeatable)")
    args = parser.parse_args()
    eras = load_eras()
    if not eras:
        print("no era module is importable: build them first (tools/dev compare)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        raw_path = Path(scratch) / "pytest-benchmark.json"
        status = run_pytest_benchmark(args, raw_path)
        if status != 0:
            return status
        raw = json.loads(raw_path.read_text())
    results = results_of(raw)
    report = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "short": args.short,
        "rounds": raw["benchmarks"][0]["stats"]["rounds"] if raw["benchmarks"] else 0,
        "harness": f"pytest-benchmark {raw['version']}",
        "eras": {name: m.PYO3_VERSION for name, m in eras.items()},
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
