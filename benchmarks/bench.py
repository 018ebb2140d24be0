"""The benchmark suite: what awaiting costs in each era, against native Python.

Everything timed is measured in one pytest-benchmark session (``test_bench.py``, which
holds the cases defined here) on one interpreter: each figure is the median time per
operation over several rounds (garbage collector off while timing), with its spread (the
interquartile range, and min-max), and its ratio to the baseline of its group measured in
the same run, with the ratio's own range. Two probes run outside pytest-benchmark, each in
fresh processes: memory (bytes per pending awaitable at 100,000 pending, and the size of a
coroutine object) and load (100,000 futures with random short delays at once: throughput,
and latency from the wake-up to the awaiting Task resuming). Results go to JSON;
``report.py`` turns them into the markdown tables and chart of the guide.

    python benchmarks/bench.py [--short] [--json build/bench/results.json] [--rounds N]

``--short`` runs every benchmark with small counts, for CI (it proves the suite works; its
figures are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.util
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable, NamedTuple


def import_eras() -> types.ModuleType:
    """``tools/eras.py``, the one list of eras, imported by its path (this script runs
    from anywhere, also in venvs that hold nothing but the eras and pytest)."""
    path = Path(__file__).resolve().parent.parent / "tools" / "eras.py"
    spec = importlib.util.spec_from_file_location("eras", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("eras", module)
    spec.loader.exec_module(module)
    return module


eras = import_eras()
# The import names of the eras' modules, oldest era first.
ERAS: list[str] = list(eras.MODULES)
MODERN: str = eras.ERAS["pymethods"].module

# A row is "noisy" when its interquartile range is more than this fraction of its median.
NOISY = 0.10


def load_eras():
    modules = {}
    for name in ERAS:
        with contextlib.suppress(ImportError):
            modules[name] = importlib.import_module(name)
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


# The floor of the group: what no class can beat where `await` takes a value back from a
# type that is not CPython's own generator or coroutine (the rows' names say it).
DONE_FUTURE = "floor: an asyncio.Future already done, made once (a C awaitable, not a coroutine)"


def done_future():
    """A factory of one ``asyncio.Future`` whose result is set: awaiting it runs CPython's
    own C awaitable (``Future.__await__``'s iterator) and makes nothing per await but that
    iterator, from a free list. A class written in Rust pays at least this per ``await``,
    and more: its object is made and freed each time, and it is entered through PyO3."""
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        future.set_result(1)
    finally:
        loop.close()
    return lambda _value: future


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


# --- 4. Rust futures: the three bridges on the same futures -----------------------

# The compiled functions of the modern crate's `baselines._bench` that await the same
# woken future through each bridge, and the name of the bridge.
THREE_BRIDGES = [
    ("woken_bridge", "bridge"),
    ("woken_async_fn", "PyO3 async fn"),
    ("woken_future_into_py", "future_into_py"),
]


async def awaiter(factory, argument):
    """The awaiting coroutine of every gathered future: each one is awaited by its own
    Task, whatever the factory returns (an asyncio Future included)."""
    return await factory(argument)


def sequential(factory, n, argument=0):
    """One Task awaits ``factory(argument)`` ``n`` times in turn."""

    async def main():
        for _ in range(n):
            await factory(argument)

    return lambda: asyncio.run(main())


def gathered(factory, n, argument=0):
    """``n`` Tasks at once, each awaiting one ``factory(argument)``."""

    async def main():
        await asyncio.gather(*(awaiter(factory, argument) for _ in range(n)))

    return lambda: asyncio.run(main())


def in_executor(function):
    """The Python baseline of a future woken from another thread: ``function`` run by
    ``loop.run_in_executor`` on asyncio's default thread pool (the argument is ignored)."""

    def factory(_):
        return asyncio.get_running_loop().run_in_executor(None, function)

    return factory


def count_primes_python(n: int) -> int:
    """``count_primes`` in Python: the same segmented sieve."""
    return sum(len(chunk) for chunk in python_prime_segments(n))


# --- 5. drive() against the same loop in Python ------------------------------------


def python_drive(awaitable):
    iterator = awaitable.__await__()
    while True:
        try:
            item = next(iterator)
        except StopIteration as stop:
            return stop.value
        if item is not None:
            raise RuntimeError("needs an event loop")


# --- 6. streams and the semaphore (issue 13) ---------------------------------------


async def native_ints(n):
    """The native async generator ``ticks(n, 0)`` is measured against."""
    for i in range(n):
        yield i


def consume(make, n):
    """``async for`` over ``make(n)`` (a stream or an async generator) in a Task."""

    async def main():
        async for _ in make(n):
            pass

    return lambda: asyncio.run(main())


# The segment of the sieve in `sieve.rs` (both crates) for `count_primes`: 2**15 numbers
# at a time. A `primes` worker starts at 2**10 (it must come back to its 64-prime buffer
# within microseconds); here each segment costs a Python loop over the base primes, and
# the pipeline hands over whole segments through a queue of 2, so it keeps the longer one.
SEGMENT = 1 << 15


def python_prime_segments(n: int):
    """The segmented sieve of ``sieve.rs`` in Python (composites struck out with
    ``bytearray`` slice assignment, one segment of 2**15 numbers at a time): yields each
    segment's primes as one list."""
    if n < 3:
        return
    root = int(n**0.5) + 1
    composite = bytearray(root + 1)
    base = []
    for i in range(2, root + 1):
        if not composite[i]:
            base.append(i)
            composite[i * i :: i] = b"\x01" * len(range(i * i, root + 1, i))
    low = 0
    while low < n:
        high = min(low + SEGMENT, n)
        size = high - low
        candidate = bytearray(b"\x01") * size
        for p in base:
            if p * p >= high:
                break
            first = max(-(-low // p) * p, p * p) - low
            candidate[first::p] = bytes(len(range(first, size, p)))
        first = max(low, 2)
        yield list(itertools.compress(range(first, high), candidate[first - low :]))
        low = high


def python_primes_pipeline(n: int):
    """The Python pipeline ``primes(n)`` is measured against: the same sieve on
    asyncio's default thread pool (``run_in_executor``), each segment's primes handed to
    the loop as one list through a bounded ``asyncio.Queue`` (2 segments,
    ``run_coroutine_threadsafe(queue.put(...))``), and consumed one prime at a time with
    ``async for`` over an async generator."""

    async def stream(_n):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=2)

        def produce():
            for chunk in python_prime_segments(n):
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        worker = loop.run_in_executor(None, produce)
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            for prime in chunk:
                yield prime
        await worker

    return stream


# The ceiling of the group: one `async for` step of CPython's own async generator per
# prime, with no sieve and no thread at all; no stream that gives one prime per
# `__anext__` can do better.
PRIMES_FLOOR = "floor: a native async generator yielding as many ints (no sieve)"

# The number of primes below n (the ops of the `primes` rows).
PRIMES_BELOW = {10**5: 9_592, 10**6: 78_498, 10**7: 664_579}


def uncontended(make, n):
    """One Task: ``async with sem: pass``, ``n`` times, on ``make(1)``."""

    async def main():
        sem = make(1)
        for _ in range(n):
            async with sem:
                pass

    return lambda: asyncio.run(main())


def contended(make, tasks, each):
    """``tasks`` Tasks sharing ``make(1)``, each ``each`` times ``async with sem:
    await asyncio.sleep(0)`` (so that the others queue up behind the holder)."""

    async def worker(sem):
        for _ in range(each):
            async with sem:
                await asyncio.sleep(0)

    async def main():
        sem = make(1)
        await asyncio.gather(*(worker(sem) for _ in range(tasks)))

    return lambda: asyncio.run(main())


# --- the cases ----------------------------------------------------------------------


class Case(NamedTuple):
    """One row: ``run()`` performs ``ops`` operations of ``name`` (the thing measured, in
    words), in ``group``, whose ratio is taken to the row named ``baseline`` of the group
    (itself for a baseline). ``era`` is the module whose code the row runs (None: Python
    only)."""

    group: str
    name: str
    baseline: str
    ops: int
    run: Callable[[], Any]
    era: str | None


# Groups whose baseline is not native asyncio say so in their title.
DRIVE = "drive() of a countdown, per step, against the same loop in Python"


def benchmarks(eras, short: bool) -> list[Case]:
    """Every timed row, grouped, each group's baseline first."""
    scale = 20 if short else 1
    n_await, n_steps, n_tasks = 200_000 // scale, 200_000 // scale, 20_000 // scale
    n_seq, n_gather = 20_000 // scale, 10_000 // scale
    n_timer, n_items, n_sem = 200 // scale, 100_000 // scale, 50_000 // scale
    primes_below = 10**5 if short else 10**7
    modern = eras.get(MODERN)
    bench = getattr(getattr(modern, "baselines", None), "_bench", None)
    cases: list[Case] = []

    def add(group, name, baseline, ops, run, era):
        cases.append(Case(group, name, baseline or name, ops, run, era))

    group = "await of a ready value"
    add(group, "native async def", None, n_await, await_ready(native_ready, n_await), None)
    floor = await_ready(done_future(), n_await)
    add(group, DONE_FUTURE, "native async def", n_await, floor, None)
    for name, m in eras.items():
        add(
            group, f"{name}.ready", "native async def", n_await, await_ready(m.ready, n_await), name
        )
        if hasattr(m, "baselines"):
            add(
                group,
                f"{name}.baselines.ready_async_fn",
                "native async def",
                n_await,
                await_ready(m.baselines.ready_async_fn, n_await),
                name,
            )

    for group, stepped in [
        ("one suspension, delegated", suspend_through),
        ("one suspension, delegated, stepped from C", suspend_through_from_c),
    ]:
        add(group, "native await", None, n_steps, stepped(native_delegate, n_steps), None)
        for name, m in eras.items():
            add(
                group,
                f"{name}.delegate",
                "native await",
                n_steps,
                stepped(m.delegate, n_steps),
                name,
            )

    group = "create_task and run it"
    add(group, "native coroutine", None, n_tasks, create_tasks(native_ready, n_tasks), None)
    for name, m in eras.items():
        add(
            group,
            f"{name}.ready",
            "native coroutine",
            n_tasks,
            create_tasks(m.ready, n_tasks),
            name,
        )

    # (1) A Rust future ready at its first poll, each bridge in its most natural form.
    native = "native async def returning at once"
    for shape, make, count in [
        ("sequential", sequential, n_seq),
        ("10,000 gathered", gathered, n_gather),
    ]:
        group = f"a future ready at its first poll, awaited by a Task, {shape}"
        add(group, native, None, count, make(native_ready, count), None)
        for name, m in eras.items():
            add(group, f"{name}.sleep(0) (bridge)", native, count, make(m.sleep, count), name)
        if bench is not None:
            add(
                group,
                f"{MODERN}.baselines._bench.ready_bridge (bridge)",
                native,
                count,
                make(bench.ready_bridge, count),
                MODERN,
            )
            add(
                group,
                f"{MODERN}.baselines.ready_async_fn (PyO3 async fn)",
                native,
                count,
                make(modern.baselines.ready_async_fn, count),
                MODERN,
            )
            # Two thread hops per await: a tenth of the count in sequence, the same per op.
            slow = count // 10 if make is sequential else count
            add(
                group,
                f"{MODERN}.baselines._bench.ready_future_into_py (future_into_py)",
                native,
                slow,
                make(bench.ready_future_into_py, slow),
                MODERN,
            )

    # (2) A future woken from a runtime thread: a tokio task completes a oneshot.
    native = "loop.run_in_executor(None, time.time_ns)"
    for shape, make, count in [
        ("sequential", sequential, n_seq // 4),
        ("1,000 gathered", gathered, 1_000 // scale),
        ("10,000 gathered", gathered, n_gather),
    ]:
        group = f"a future woken by a tokio task (oneshot), {shape}"
        add(group, native, None, count, make(in_executor(time.time_ns), count), None)
        if bench is not None:
            for function, bridge in THREE_BRIDGES:
                add(
                    group,
                    f"{MODERN}.baselines._bench.{function}(0) ({bridge})",
                    native,
                    count,
                    make(getattr(bench, function), count),
                    MODERN,
                )

    # The same on tokio's 1 ms timer, where the 0.12 era takes part too (its `sleep`).
    for shape, make, count in [
        ("sequential", sequential, n_timer),
        ("10,000 gathered", gathered, n_gather),
    ]:
        group = f"a tokio timer of 1 ms, {shape} (baseline: the modern bridge's sleep)"
        native = f"{MODERN}.sleep(0.001) (bridge)" if modern is not None else None
        if modern is not None:
            add(group, native, None, count, make(modern.sleep, count, 0.001), MODERN)
        for name, m in eras.items():
            if name != MODERN and native is not None:
                add(
                    group,
                    f"{name}.sleep(0.001) (bridge)",
                    native,
                    count,
                    make(m.sleep, count, 0.001),
                    name,
                )
        if bench is not None:
            for function, bridge in THREE_BRIDGES:
                add(
                    group,
                    f"{MODERN}.baselines._bench.{function}(0.001) ({bridge})",
                    native,
                    count,
                    make(getattr(bench, function), count, 0.001),
                    MODERN,
                )

    group = "a thread hop: await count_primes(2)"
    native = "loop.run_in_executor(None, count_primes_python, 2)"
    hop = n_seq // 4

    def count_primes_in_python(_):
        return asyncio.get_running_loop().run_in_executor(None, count_primes_python, 2)

    add(group, native, None, hop, sequential(count_primes_in_python, hop, 2), None)
    for name, m in eras.items():
        add(group, f"{name}.count_primes(2)", native, hop, sequential(m.count_primes, hop, 2), name)

    for name, m in eras.items():
        loop = f"python loop over {name}.countdown"
        add(DRIVE, loop, None, n_steps, functools_partial(run_python_drive, m, n_steps), name)
        add(DRIVE, f"{name}.drive", loop, n_steps, functools_partial(run_drive, m, n_steps), name)

    # Issue 13: streams and the semaphore.
    group = "async for, one item: ticks(n, 0)"
    native = "native async generator"
    add(group, native, None, n_items, consume(native_ints, n_items), None)
    for name, m in eras.items():
        if hasattr(m, "ticks"):
            add(group, f"{name}.ticks(n, 0)", native, n_items, consume(m.ticks, n_items), name)

    group = "async for over the primes below 10**7 (short: 10**5), per prime"
    native = "Python sieve in the thread pool, through an asyncio.Queue"
    ops = PRIMES_BELOW[primes_below]
    add(group, native, None, ops, consume(python_primes_pipeline(primes_below), 0), None)
    add(group, PRIMES_FLOOR, native, ops, consume(native_ints, ops), None)
    for name, m in eras.items():
        if hasattr(m, "primes"):
            add(
                group,
                f"{name}.primes",
                native,
                ops,
                consume(functools_partial(primes_of, m, primes_below), 0),
                name,
            )

    for shape, make, ops in [
        ("uncontended (one Task)", lambda f: uncontended(f, n_sem), n_sem),
        ("contended (10 Tasks, one permit)", lambda f: contended(f, 10, n_sem // 20), n_sem // 2),
    ]:
        group = f"async with a semaphore, {shape}"
        native = "asyncio.Semaphore"
        add(group, native, None, ops, make(asyncio.Semaphore), None)
        for name, m in eras.items():
            if hasattr(m, "Semaphore"):
                add(group, f"{name}.Semaphore", native, ops, make(m.Semaphore), name)
    return cases


def functools_partial(function, *args):
    """``functools.partial``, spelled out: the module it binds stays visible to
    ``test_bench_cases.py`` (it inspects what each row's callable holds)."""

    def call(*more):
        return function(*args, *more)

    return call


def run_python_drive(m, n):
    return python_drive(m.countdown(n, None))


def run_drive(m, n):
    return m.drive(m.countdown(n, None))


def primes_of(m, below, _n):
    return m.primes(below)


# --- probes outside pytest-benchmark: memory and load, each in a fresh process -----

N_PENDING = 100_000


def rss_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pending_factories(eras) -> dict[str, tuple[str | None, Callable[[], Any]]]:
    """Memory rows: name -> (era, a factory of one awaitable that stays pending for an
    hour). Each is awaited by a coroutine in its own Task, as an application would."""
    rows: dict[str, tuple[str | None, Callable[[], Any]]] = {
        "asyncio.Future (never completed)": (
            None,
            lambda: asyncio.get_running_loop().create_future(),
        ),
        "asyncio.sleep(3600)": (None, functools_partial(asyncio.sleep, 3600)),
    }
    for name, m in eras.items():
        rows[f"{name}.sleep(3600) (RustFuture)"] = (name, functools_partial(m.sleep, 3600))
        if hasattr(m, "baselines"):
            rows[f"{name}.baselines.sleep_async_fn(3600)"] = (
                name,
                functools_partial(m.baselines.sleep_async_fn, 3600),
            )
            rows[f"{name}.baselines.sleep_future_into_py(3600)"] = (
                name,
                functools_partial(m.baselines.sleep_future_into_py, 3600),
            )
    return rows


def coroutine_factories(eras) -> dict[str, tuple[str | None, Callable[[], Any]]]:
    """Size rows: name -> (era, a factory of one coroutine object, not started)."""
    rows: dict[str, tuple[str | None, Callable[[], Any]]] = {
        "native coroutine (async def)": (None, functools_partial(native_ready, 1)),
    }
    for name, m in eras.items():
        rows[f"{name}.ready(1) (RustCoroutine)"] = (name, functools_partial(m.ready, 1))
        if hasattr(m, "baselines"):
            rows[f"{name}.baselines.ready_async_fn(1) (PyO3 coroutine)"] = (
                name,
                functools_partial(m.baselines.ready_async_fn, 1),
            )
    return rows


def load_factories(eras) -> dict[str, tuple[str | None, Callable[[float], Any], bool]]:
    """Load rows: name -> (era, factory of a future for a delay, whether it gives its
    wake-up time, ``time.time_ns()``, so that the latency to the Task resuming is known)."""
    rows: dict[str, tuple[str | None, Callable[[float], Any], bool]] = {
        "asyncio.sleep(delay)": (None, asyncio.sleep, False),
    }
    for name, m in eras.items():
        rows[f"{name}.sleep(delay) (bridge)"] = (name, m.sleep, False)
    modern = eras.get(MODERN)
    bench = getattr(getattr(modern, "baselines", None), "_bench", None)
    if bench is not None:
        for function, bridge in THREE_BRIDGES:
            rows[f"{MODERN}.baselines._bench.{function}(delay) ({bridge})"] = (
                MODERN,
                getattr(bench, function),
                True,
            )
    return rows


def probe_memory(kind: str, name: str, method: str, n: int) -> float:
    """Bytes per object: ``n`` pending awaitables each in a Task (``kind`` "pending"), or
    ``n`` coroutine objects (``kind`` "size"), by tracemalloc or RSS."""
    import tracemalloc

    eras = load_eras()
    if method == "tracemalloc":
        tracemalloc.start()

    def measure() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else rss_bytes()

    if kind == "size":
        factory = coroutine_factories(eras)[name][1]
        before = measure()
        objects = [factory() for _ in range(n)]
        after = measure()
        for coroutine in objects:
            with contextlib.suppress(AttributeError):
                coroutine.close()
        return (after - before) / n

    factory = pending_factories(eras)[name][1]

    async def wait(awaitable):
        await awaitable

    async def main() -> float:
        for _ in range(3):  # the loop's own first allocations, before the baseline
            await asyncio.sleep(0)
        before = measure()
        tasks = [asyncio.ensure_future(wait(factory())) for _ in range(n)]
        for _ in range(3):  # every Task started and suspended on its awaitable
            await asyncio.sleep(0)
        after = measure()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return (after - before) / n

    return asyncio.run(main())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_load(name: str, n: int, rounds: int) -> list[dict]:
    """``n`` futures at once, delays uniform in 0-10 ms (seeded), each awaited by its own
    Task: per round, the throughput; the lateness of every Task (from its ``await``
    starting, plus the delay, to the Task resuming: what the awaiting code sees, timer
    granularity included); and, where the future reports its wake-up time, the latency
    from that wake-up to the Task resuming. Each as median and 99th percentile."""
    era, factory, stamped = load_factories(load_eras())[name]
    rng = random.Random(14)
    delays = [rng.uniform(0, 0.010) for _ in range(n)]
    out = []
    for _ in range(rounds):
        latencies: list[int] = []
        lateness: list[float] = []

        async def one(delay, latencies=latencies, lateness=lateness):
            start = time.time_ns()
            woke = await factory(delay)
            resumed = time.time_ns()
            lateness.append(resumed - start - delay * 1e9)
            if stamped:
                latencies.append(resumed - woke)

        async def main():
            start = time.perf_counter()
            await asyncio.gather(*(one(d) for d in delays))
            return time.perf_counter() - start

        gc.collect()
        gc.disable()
        try:
            elapsed = asyncio.run(main())
        finally:
            gc.enable()
        row = {
            "per_second": n / elapsed,
            "late_p50_us": percentile(lateness, 0.50) / 1000,
            "late_p99_us": percentile(lateness, 0.99) / 1000,
        }
        if stamped:
            row["p50_us"] = percentile(latencies, 0.50) / 1000
            row["p99_us"] = percentile(latencies, 0.99) / 1000
        out.append(row)
    return out


def spread(values: list[float]) -> dict:
    """Median, quartiles, min and max of a few values."""
    ordered = sorted(values)
    return {
        "median": percentile(ordered, 0.5)
        if len(ordered) % 2
        else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2,
        "min": ordered[0],
        "max": ordered[-1],
    }


def run_probe(args: list[str]) -> Any:
    """Runs ``bench.py --probe ARGS`` in a fresh interpreter; its JSON answer."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--probe", *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"probe {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_rows(eras, short: bool, processes: int = 3) -> list[dict]:
    """Bytes per pending awaitable and per coroutine object, by tracemalloc and by RSS,
    each the median and range over ``processes`` fresh processes."""
    n = N_PENDING // 20 if short else N_PENDING
    rows = []
    for kind, table in [("pending", pending_factories(eras)), ("size", coroutine_factories(eras))]:
        for name, (era, _) in table.items():
            row: dict[str, Any] = {"kind": kind, "name": name, "era": era, "n": n}
            for method in ["tracemalloc", "rss"]:
                values = [
                    run_probe(["memory", kind, name, method, str(n)]) for _ in range(processes)
                ]
                row[method] = {k: round(v, 1) for k, v in spread(values).items()}
            rows.append(row)
            print(
                f"  memory {kind:8} {name:66} {row['tracemalloc']['median']:8.0f} B traced"
                f" {row['rss']['median']:8.0f} B RSS",
                file=sys.stderr,
            )
    return rows


def load_rows(eras, short: bool) -> list[dict]:
    n, rounds = (N_PENDING // 20, 2) if short else (N_PENDING, 5)
    rows = []
    for name, (era, _, stamped) in load_factories(eras).items():
        runs = run_probe(["load", name, str(n), str(rounds)])
        row: dict[str, Any] = {"name": name, "era": era, "n": n, "rounds": rounds}
        for key in ["per_second", "late_p50_us", "late_p99_us", "p50_us", "p99_us"]:
            if key in runs[0]:
                row[key] = {k: round(v, 1) for k, v in spread([r[key] for r in runs]).items()}
        rows.append(row)
        latency = (
            f"late p50 {row['late_p50_us']['median']:9,.0f} µs p99 "
            f"{row['late_p99_us']['median']:9,.0f} µs"
        )
        if stamped:
            latency += (
                f"  wake→resume p50 {row['p50_us']['median']:9,.0f} µs"
                f" p99 {row['p99_us']['median']:9,.0f} µs"
            )
        print(
            f"  load {name:70} {row['per_second']['median']:10,.0f} /s  {latency}",
            file=sys.stderr,
        )
    return rows


# --- pytest-benchmark, and the report -----------------------------------------------


def run_pytest_benchmark(args, raw: Path) -> int:
    """Times every case with pytest-benchmark (``test_bench.py``), writing its JSON to
    ``raw``; its own output is shown only if it fails."""
    env = {
        **os.environ,
        "PYO3_ASYNC_BENCH_SHORT": "1" if args.short else "",
        "PYO3_ASYNC_BENCH_ROUNDS": str(args.rounds or ""),
        "PYO3_ASYNC_BENCH_ONLY": "\n".join(args.only),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(Path(__file__).with_name("test_bench.py")),
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-enable",
            "--benchmark-disable-gc",
            "--benchmark-timer=time.perf_counter",
            f"--benchmark-json={raw}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(proc.stdout[-20000:], proc.stderr[-5000:], file=sys.stderr)
    return proc.returncode


def results_of(raw: dict) -> list[dict]:
    """Our rows from pytest-benchmark's JSON. Per operation: the median round, the
    interquartile range and min-max; the ratio of medians to the group's baseline (same
    run) and its range: the row's quartiles against the baseline's, the other way round
    (``q1 / baseline q3`` to ``q3 / baseline q1``), so that a range that excludes 1.0
    means the two rows' ranges do not overlap."""
    rows, baselines = [], {}
    for entry in raw["benchmarks"]:
        info, stats = entry["extra_info"], entry["stats"]
        per = 1e9 / info["ops"]
        row = {
            "group": info["group"],
            "name": info["name"],
            "baseline": info["baseline"],
            "era": info.get("era"),
            "ops": info["ops"],
            "rounds": stats["rounds"],
            "ns_per_op": round(stats["median"] * per, 1),
            "q1": round(stats["q1"] * per, 1),
            "q3": round(stats["q3"] * per, 1),
            "min": round(stats["min"] * per, 1),
            "max": round(stats["max"] * per, 1),
        }
        row["noisy"] = (row["q3"] - row["q1"]) > NOISY * row["ns_per_op"]
        if row["baseline"] == row["name"]:
            baselines[(row["group"], row["name"])] = row
        rows.append(row)
    for row in rows:
        base = baselines[(row["group"], row["baseline"])]
        row["ratio"] = round(row["ns_per_op"] / base["ns_per_op"], 3)
        row["ratio_lo"] = round(row["q1"] / base["q3"], 3)
        row["ratio_hi"] = round(row["q3"] / base["q1"], 3)
        row["noisy"] = row["noisy"] or base["noisy"]
    return rows


def verdict(row: dict) -> str:
    """Faster, slower, or not to be ranked against the baseline (ranges overlap)."""
    if row["name"] == row["baseline"]:
        return "baseline"
    if row["ratio_hi"] < 1:
        return "faster"
    if row["ratio_lo"] > 1:
        return "slower"
    return "≈ (ranges overlap)"


def machine_line(report: dict) -> str:
    """Python, machine and load: the first line of every table."""
    return (
        f"Python {report['python']} ({report['implementation']}) on {report['machine']}, "
        f"{report['cpus']} CPUs, load average {report['loadavg']} at the start"
    )


def console_table(report: dict) -> str:
    """The table printed at the end of a run: one header, each group as a title line,
    nothing truncated."""
    rows = report["results"]
    width = max(len(r["name"]) for r in rows) if rows else 20
    lines = [
        machine_line(report),
        f"eras: {', '.join(f'{k} (PyO3 {v})' for k, v in report['eras'].items())}; "
        f"median of {report['rounds']} rounds, IQR = interquartile range",
        "",
        f"  {'implementation':{width}}  {'ns/op':>12}  {'IQR':>21}  {'ratio (range)':>22}  note",
    ]
    group = None
    for row in rows:
        if row["group"] != group:
            group = row["group"]
            lines.append(group)
        iqr = f"{row['q1']:,.1f}–{row['q3']:,.1f}"
        if row["name"] == row["baseline"]:
            ratio = "baseline"
        else:
            ratio = f"{row['ratio']:.2f}× ({row['ratio_lo']:.2f}–{row['ratio_hi']:.2f})"
        note = ("noisy; " if row["noisy"] else "") + verdict(row)
        lines.append(
            f"  {row['name']:{width}}  {row['ns_per_op']:12,.1f}  {iqr:>21}  {ratio:>22}  {note}"
        )
    if report.get("memory"):
        lines += [
            "",
            f"memory (bytes per object, median of {report['memory_processes']} processes; "
            "tracemalloc / RSS)",
        ]
        for row in report["memory"]:
            lines.append(
                f"  {row['kind']:8} {row['name']:{width}}  {row['tracemalloc']['median']:10,.0f}"
                f"  {row['rss']['median']:10,.0f}"
            )
    if report.get("load"):
        lines += ["", f"load: {report['load_n']:,} futures at once, delays uniform 0-10 ms"]
        for row in report["load"]:
            rate = row["per_second"]
            text = f"{rate['median']:10,.0f}/s ({rate['min']:,.0f}–{rate['max']:,.0f})"
            p50, p99 = row["late_p50_us"]["median"], row["late_p99_us"]["median"]
            text += f"  late p50 {p50:,.0f} µs p99 {p99:,.0f} µs"
            if "p50_us" in row:
                p50, p99 = row["p50_us"]["median"], row["p99_us"]["median"]
                text += f"  wake→resume p50 {p50:,.0f} µs p99 {p99:,.0f} µs"
            lines.append(f"  {row['name']:{width}}  {text}")
    return "\n".join(lines)


def probe_main(args: list[str]) -> int:
    """``bench.py --probe memory KIND NAME METHOD N`` or ``--probe load NAME N ROUNDS``:
    one measurement in this fresh process, printed as JSON."""
    if args[0] == "memory":
        kind, name, method, n = args[1:]
        print(json.dumps(probe_memory(kind, name, method, int(n))))
    else:
        name, n, rounds = args[1:]
        print(json.dumps(probe_load(name, int(n), int(rounds))))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--probe"]:
        return probe_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="small counts (CI)")
    parser.add_argument("--json", type=Path, default=Path("build/bench/results.json"))
    parser.add_argument("--rounds", type=int, default=None, help="default 9 (short: 3)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the groups whose title contains TEXT (repeatable)",
    )
    parser.add_argument("--no-probes", action="store_true", help="skip memory and load")
    parser.add_argument("--no-load", action="store_true", help="skip the load probe")
    parser.add_argument(
        "--memory-processes", type=int, default=3, help="fresh processes per memory figure"
    )
    args = parser.parse_args()
    eras = load_eras()
    if not eras:
        print("no era module is importable: build them first (tools/dev compare)", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "short": args.short,
        "eras": {name: m.PYO3_VERSION for name, m in eras.items()},
        "noisy_threshold": NOISY,
    }
    print("running the benchmarks (the table follows when they are done)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        raw_path = Path(scratch) / "pytest-benchmark.json"
        status = run_pytest_benchmark(args, raw_path)
        if status != 0:
            return status
        raw = json.loads(raw_path.read_text())
    report["rounds"] = raw["benchmarks"][0]["stats"]["rounds"] if raw["benchmarks"] else 0
    report["harness"] = f"pytest-benchmark {raw['version']}"
    report["results"] = results_of(raw)
    if not args.no_probes and not args.only:
        report["memory_processes"] = args.memory_processes
        report["memory"] = memory_rows(eras, args.short, args.memory_processes)
        if not args.no_load:
            report["load_n"] = N_PENDING // 20 if args.short else N_PENDING
            report["load"] = load_rows(eras, args.short)
    report["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(console_table(report), file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
